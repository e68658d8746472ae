"""Hot loops of ganprint: plain array-in/array-out functions, Numba on the CPU, CuPy on the GPU.

No file I/O here and no CuPy import at module import time. Every kernel has a float64 reference
twin in ``tests/naive.py``.
"""
