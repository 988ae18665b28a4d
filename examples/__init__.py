"""Examples, demos and benchmarks of leadstreams: not part of the installed package."""
