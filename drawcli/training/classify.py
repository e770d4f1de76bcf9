"""The attention classifier as a model family: labelled images in, cross-entropy and error out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from drawcli import data, distributed
from drawcli.accuracy import error_report, grey, predict
from drawcli.classifier import AttentionClassifier
from drawcli.config import ClassifierConfig
from drawcli.errors import ConfigError, DataError
from drawcli.training.distill import Teachers, soft_cross_entropy
from drawcli.training.execution import Execution, as_run, plan
from drawcli.training.family import BatchLoss, ModelFamily
from drawcli.training.settings import TrainSettings


class ClassifierFamily(ModelFamily):
    """The attention classifier trained on a labelled data set's grey levels (no binarization)."""

    metrics = ("loss", "error")

    def __init__(self, config: ClassifierConfig, settings: TrainSettings, device: torch.device,
                 ctx: distributed.Dist | None = None) -> None:  # fmt: skip
        self.config, self.settings, self.device = config, settings, device
        self.ctx = ctx or distributed.Dist()
        self.dataset = dataset = data.open_dataset(settings.dataset)
        self.data_dir = data_dir = Path(settings.data_dir) if settings.data_dir else None
        if settings.redraw and not dataset.redraws:
            raise ConfigError(f"the data set {settings.dataset!r} draws its training images once, so --redraw does not apply")
        if settings.locate_loss and not dataset.has_centres:
            raise ConfigError(f"the data set {settings.dataset!r} does not record where its objects are, so --locate-loss has nothing to aim at")
        if settings.locate_loss and config.glimpses < 2:
            raise ConfigError("--locate-loss places the windows of glimpses 2 and on, and this model has 1 glimpse")
        train = data.load_labelled(dataset, "train", data_dir, config.image_shape)
        if len(train.classes) < 2:
            raise DataError(f"the {settings.dataset} training split has {len(train.classes)} class ({', '.join(train.classes)}): a classifier needs 2 or more")
        self.test = data.load_labelled(dataset, "test", data_dir, config.image_shape)
        if self.test.classes != train.classes:
            raise DataError(f"the test split's classes {self.test.classes} differ from the training split's {train.classes}")
        self.config = config.replace(classes=len(train.classes))  # the number of classes comes from the data
        self.images, self.targets, self.classes, self.centres = train  # targets: (N,) int64 class indices
        self.train_size = len(self.images)
        self._model: AttentionClassifier | None = None
        self.soft: torch.Tensor | None = None  # (N, classes) teachers' probabilities of the training images
        self.teachers = (Teachers(settings.teachers, self.classes, config.image_shape, device, settings.teacher_temperature,
                                  settings.amp == "bf16") if settings.teachers else None)  # fmt: skip
        precision = "bf16 autocast" if settings.amp == "bf16" else "float32"
        # The compiled unit is the whole glimpse loop (classifier.py).
        self._execution = plan(settings, self.train_size, config.glimpses, device, precision, unrolled=config.glimpses)

    def execution(self) -> Execution:
        return as_run(self._execution, self._model)

    def build(self) -> AttentionClassifier:
        model = AttentionClassifier(self.config).to(self.device)
        if self.settings.locate_loss and not model.reader.produces_windows:
            raise ConfigError(f"the reader {self.config.reader!r} has no window to place, so --locate-loss does not apply")
        if self._execution.compiled:
            model.compile_glimpses(self.settings.compile_mode)
        return model

    def prepare(self, model: nn.Module) -> None:
        self._model = model  # type: ignore[assignment]
        if self.device.type == "cuda":  # the training set on the GPU: no copies per step
            self.images, self.targets = self.images.to(self.device), self.targets.to(self.device)
            self.centres = self.centres.to(self.device) if self.centres is not None else None

    def start_epoch(self, epoch: int) -> None:
        """With --redraw, the data set's composition for this epoch (epoch 0's was loaded in __init__);
        with --teacher, the teachers' soft targets for the images of the epoch.

        The loop calls this once per epoch, so each composition is drawn (and taught) once.
        """
        if self.settings.redraw and epoch > 0:
            drawn = data.load_labelled_epoch(self.dataset, epoch, self.data_dir, self.config.image_shape)
            if len(drawn.images) != self.train_size or drawn.classes != self.classes:
                raise DataError(f"epoch {epoch}'s training set has {len(drawn.images)} images of classes {drawn.classes}, "
                                f"not {self.train_size} of {self.classes} like epoch 0's")  # fmt: skip
            device = self.images.device
            self.images, self.targets = drawn.images.to(device), drawn.labels.to(device)
            self.centres = drawn.centres.to(device) if drawn.centres is not None else None
            self.soft = None
        if self.teachers is not None and self.soft is None:  # the teachers' view of these very images, a part per rank
            self.soft = distributed.computed_in_parts(self.teachers.targets, self.images, self.ctx)

    def index_device(self) -> torch.device:
        return self.images.device

    def batch_loss(self, net: nn.Module, model: nn.Module, indices: torch.Tensor, step: int) -> BatchLoss:
        model.start_step()
        x = distributed.shard(grey(self.images[indices]), self.ctx).to(self.device, non_blocking=True)
        y = distributed.shard(self.targets[indices], self.ctx).to(self.device, non_blocking=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.settings.amp == "bf16"):
            out = net(x)
        loss = out.loss(y)
        # In the logits' precision, on purpose: under --amp bf16 a confident right answer then adds no
        # gradient, a built-in damping of overconfidence. The reported loss above is float32.
        objective = out.loss(y, exact=False)
        if self.soft is not None:
            soft = distributed.shard(self.soft[indices], self.ctx).to(self.device, non_blocking=True)
            weight = self.settings.teacher_weight
            objective = (1 - weight) * objective + weight * soft_cross_entropy(out.logits, soft, self.settings.teacher_temperature)
        if self.settings.locate_loss and self.centres is not None:  # the family refuses --locate-loss without centres
            where = distributed.shard(self.centres[indices], self.ctx).to(self.device, non_blocking=True)
            objective = objective + self.settings.locate_loss * out.locate_loss(where)
        # The reported loss stays the labels' cross-entropy, comparable with and without teachers or the locate term.
        return BatchLoss(objective, {"loss": loss.detach().sum(), "error": 100.0 * out.wrong(y).sum()})  # error in %

    def evaluate(self, model: nn.Module) -> dict[str, float]:
        report = error_report(predict(model, self.test.images, self.device), self.test.labels, self.test.classes)
        return {"loss": report["loss"], "error": report["error"]}

    def summary(self) -> dict[str, Any]:
        teachers = {"teacher_sha256": self.teachers.digests} if self.teachers is not None else {}
        return {"data_dir": self.settings.data_dir, "class_names": list(self.classes), **teachers}

    def describe(self, metrics: dict[str, float]) -> str:
        """'loss 0.350 nats, error 10.20%' (errors are in % of the examples, in training and held out)."""
        if not metrics:
            return "not measured"
        return f"loss {metrics['loss']:.3f} nats, error {metrics['error']:.2f}%"
