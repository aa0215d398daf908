"""ncbench: a terminal experiment manager for Neural Collapse studies of training losses."""

__version__ = "0.1.0"
