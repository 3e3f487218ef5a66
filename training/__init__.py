"""EvoPose2D training: the network family, COCO-format data, training and the search.

Installed as ``evopose_sdk.training`` (extra ``[train]``). Imports Keras 3; set
``KERAS_BACKEND`` (tensorflow on CPU, jax on a GPU) before importing.
"""
