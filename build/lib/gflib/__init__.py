"""gflib: gradient flow in sparse neural networks (Tessera, Hooker & Rosman 2021), reproduced."""
__version__ = "0.1.0"
