"""hookloop's built-in plugins. Each implements public hooks only; a third-party plugin can do the same."""

from plugins.csv_logger import CSVLogger  # noqa: E402  (standard library only)
from plugins.tensorboard import TensorBoardLogger  # noqa: E402  (imports tensorboardX on first write)
from plugins.checkpoint import ModelCheckpoint  # noqa: E402
from plugins.early_stopping import EarlyStopping  # noqa: E402
from plugins.lr_monitor import LearningRateLogger, LearningRateMonitor  # noqa: E402
