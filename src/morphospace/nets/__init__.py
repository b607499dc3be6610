"""Neural-network plumbing shared by the model layers above it.

``backbones``  CNN backbones (EfficientNet-Lite0, ResNets, a small CNN) with their input
               handling: the trunk of the form encoder (:mod:`morphospace.ssl`) and of the
               feature study (:mod:`morphospace.study`); ``trunks`` the networks behind them;
``batches``    a network over a whole (memory-mapped) cube in batches, without gradients;
``spawn``      what several processes need around a fit: a spawning strategy's weights pass
               through the run, and every process leaves its group before it exits;
``launched``   SIGTERM in a trainer of several processes that each run the whole command.
"""
