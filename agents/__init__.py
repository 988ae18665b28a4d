"""leadstreams' Faust layer: the app, its agent, Kafka I/O helpers and the CLI.

Kept thin: all lead processing lives in the Kafka-free ``streams`` engine.
"""

# Marker checked by agents.package_check: another distribution (e.g. openai-agents)
# also installs a top-level ``agents`` package and could shadow this one.
LEADSTREAMS_PACKAGE = "leadstreams"
