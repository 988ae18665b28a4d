"""What the tests, the demo, the benchmarks and the reliability runs share (not shipped):
the `leadstreams worker` subprocess harness."""
