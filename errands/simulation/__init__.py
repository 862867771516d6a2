"""A simulated day in Ningbo, played against the running services through their public APIs.

`simulate(config)` runs it; `errands simulate ...` (`run.main`) is its command line; `demo_config()`
is the gentle preset `make run` plays.
"""

from errands.simulation.run import (
    BackgroundSimulation,
    SimulationConfig,
    SimulationResult,
    demo_config,
    main,
    simulate,
    start_demo,
)

__all__ = [
    "BackgroundSimulation",
    "SimulationConfig",
    "SimulationResult",
    "demo_config",
    "main",
    "simulate",
    "start_demo",
]
