"""Benchmarks on a real broker and registry: ``routing-app bench producer|rebuild|propagation``.

Each benchmark is a function ``run_<name>(settings, **params) -> dict`` in its own module
(``routing_app.bench.producer.run_producer``, ``.rebuild.run_rebuild``,
``.propagation.run_propagation``), shared by the CLI and the smoke test. Figures are reported
(ratios against a baseline measured in the same run), never asserted.

Nothing is imported here: the rebuild benchmark runs ``routing_app.bench.rebuild_child`` in a
fresh interpreter to measure its memory, and that must not pay for aiokafka or rich.
"""
