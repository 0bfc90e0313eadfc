"""hookloop's built-in plugins. Each implements public hooks only; a third-party plugin can do the same.

``plugins`` is the short name of ``hookloop.plugins`` (the same module; see ``hookloop/_names.py``).
"""
from hookloop._names import settle

settle(__name__)  # imported as ``plugins``: that name now holds ``hookloop.plugins``

from hookloop.plugins.csv_logger import CSVLogger  # noqa: E402  (standard library only)
from hookloop.plugins.tensorboard import TensorBoardLogger  # noqa: E402  (imports tensorboardX on first write)
from hookloop.plugins.checkpoint import ModelCheckpoint  # noqa: E402
from hookloop.plugins.early_stopping import EarlyStopping  # noqa: E402
from hookloop.plugins.lr_monitor import LearningRateLogger, LearningRateMonitor  # noqa: E402
from hookloop.plugins.rank_zero import rank_zero_only  # noqa: E402
from hookloop.plugins.seed_loggers import LightningLoggerBase, LoggerCollection  # noqa: E402  (0.8/0.9 names)
from hookloop.plugins.wandb_logger import WandbLogger  # noqa: E402  (imports wandb when its run is first needed)
from hookloop.plugins.mlflow_logger import MLFlowLogger  # noqa: E402  (imports mlflow when its run is first needed)
from hookloop.plugins.tuner import BatchSizeFinder, LearningRateFinder, Tuner  # noqa: E402
from hookloop.plugins.lambda_function import LambdaCallback  # noqa: E402
from hookloop.plugins.finetuning import BackboneFinetuning, BaseFinetuning  # noqa: E402
from hookloop.plugins.stochastic_weight_avg import StochasticWeightAveraging  # noqa: E402
from hookloop.plugins.prediction_writer import BasePredictionWriter  # noqa: E402
from hookloop.plugins.device_stats_monitor import DeviceStatsMonitor  # noqa: E402
from hookloop.plugins.on_exception_checkpoint import OnExceptionCheckpoint  # noqa: E402
from hookloop.plugins.pruning import ModelPruning  # noqa: E402
from hookloop.plugins.timer import Timer  # noqa: E402
from hookloop.plugins.gradient_accumulation_scheduler import GradientAccumulationScheduler  # noqa: E402
