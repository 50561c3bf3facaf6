"""SPIRAL: an RL agent that paints through a real graphics program (Ganin et al., ICML 2018).

Subpackages: ``envs`` (painting and MuJoCo environments), ``agents`` (policy and discriminator
networks), ``learning`` (losses, V-trace, rewards, trainers), ``data`` (datasets), ``services``
(the four gRPC services) and ``launch`` (the local multi-process launcher).
"""

__version__ = "0.1.0"
