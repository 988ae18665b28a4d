"""One step of a flow, in layers; a module imports only the ones above it in this list:

- ``errors``: what a partner, a template or the network can do to a step, as an outcome
- ``exchange``: what a step sent and received (the test console shows it)
- ``services``: what a step needs beyond its definition (client, protections, cache, metrics)
- ``request``: the request a step sends
- ``partner``: one call under the integration's protections and retry policy
- ``answer``: the partner's answer, or the fallback chain's, as one value
- ``judge``: outcome rules, mappings, stored vars, price and reference
- ``single`` and ``batch``: a step for one lead, or for a window of leads

The flow runner (``streams.runner``) chooses ``single`` or ``batch`` for each step.
"""
