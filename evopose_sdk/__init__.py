"""evopose-sdk: EvoPose2D top-down 2D human pose estimation.

``from evopose_sdk import PoseEstimator``
"""

__version__ = "0.1.0"
