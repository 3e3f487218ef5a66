"""EvoPose2D neuroevolution: (mu, lambda) search over genotypes with weight transfer.

``evopose-search run --config search.json DIR`` starts a search, ``evopose-search resume DIR``
continues a killed one, ``evopose-search report DIR`` writes its table and plots. In Python::

    from evopose_sdk.training.search import run_search
    search = run_search("runs/search", "search.json")
    search.best(5)
"""

from evopose_sdk.training.search.config import SearchConfig, SearchConfigError
from evopose_sdk.training.search.mutation import MutationSpace, mutate
from evopose_sdk.training.search.runner import (
    Search,
    SearchInterrupted,
    SequentialExecutor,
    fitness,
    run_search,
)
from evopose_sdk.training.search.state import SearchDir, SearchStateError

__all__ = ["MutationSpace", "Search", "SearchConfig", "SearchConfigError", "SearchDir",
           "SearchInterrupted", "SearchStateError", "SequentialExecutor", "fitness", "mutate",
           "run_search"]
