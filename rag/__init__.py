"""cronaca: cited question answering and summaries over news articles.

Importing the package makes the process offline-safe first (see ``rag.offline``), because
several dependencies reach for the network on first use.
"""

from rag import offline as _offline

_offline.setup()

__version__ = "0.1.0"
