"""edgekit: convert trained models to mobile formats and prove they still compute the same thing.

Importing this package is cheap on purpose: no machine-learning framework is imported
until a command needs it (a test checks this).
"""

__version__ = "0.1.0"
