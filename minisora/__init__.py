"""minisora: a Sora-style text-to-video diffusion transformer, built notebook by notebook.

One module per idea; the notebooks in ``notebooks/`` build each one from scratch, then import it
from here. See the README for the course map.
"""

__version__ = "0.1.0"
