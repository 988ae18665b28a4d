"""The web console: a page at ``/`` on the worker's web port (live numbers per flow and
step, recent problems, the test console) and ``leadstreams console PATH...`` (the test
console without Kafka). aiohttp routes (agents.web_console.routes) over a backend that says
what runs (agents.web_console.backends); the page is static package data (static/)."""
