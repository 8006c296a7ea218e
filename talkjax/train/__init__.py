"""The talkjax training engine: ``train_and_evaluate(config, workdir)``.

Generic over tasks (``talkjax.tasks``): GAN training (several players with their own optimisers),
frozen auxiliary networks, jit on a device mesh with donated buffers, asynchronous Orbax checkpoints
with automatic resume (including the data iterator position), TensorBoard logging, evaluators, NaN
detection and SIGTERM handling. See docs in :mod:`talkjax.train.loop` and :mod:`talkjax.tasks`.
"""

from talkjax.train.loop import TrainingDivergedError, train_and_evaluate, validate_config
from talkjax.train.state import TrainState, make_optimizer
from talkjax.train.step import make_eval_step, make_train_step

__all__ = ["TrainState", "TrainingDivergedError", "make_eval_step", "make_optimizer", "make_train_step",
           "train_and_evaluate", "validate_config"]
