"""Benchmarks: `synchub bench throughput|sync|align`, each writing JSON."""
