"""HNN Workbench: headless library for hybrid spiking/analog neural networks.

Compute modules here never import plotting or widget packages; they return tensors, records and
dataclasses. Views live in the sibling ``widgets`` package.
"""

__version__ = "0.1.0"
