"""medi2i's own contributions, registered through the same hooks as any plugin.

Its readers, writers, metrics and every ``medi2i`` subcommand are handed over by the
hook implementations below, as a plugin hands over its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from medi2i.hookspecs import hookimpl

if TYPE_CHECKING:
    import click

    from medi2i.io.base import VolumeReader, VolumeWriter
    from medi2i.metrics import Metric


@hookimpl
def register_readers(register: Callable[[VolumeReader], None]) -> None:
    from medi2i.dicom.reading.volume_reader import DicomFolderReader
    from medi2i.io import builtin_readers

    for reader in [*builtin_readers(), DicomFolderReader()]:
        register(reader)


@hookimpl
def register_writers(register: Callable[[VolumeWriter], None]) -> None:
    from medi2i.dicom.writing.volume_writer import DicomSeriesWriter
    from medi2i.io import builtin_writers

    for writer in [*builtin_writers(), DicomSeriesWriter()]:
        register(writer)


@hookimpl
def register_metrics(register: Callable[[Metric], None]) -> None:
    from medi2i.evaluation.metric_objects import evaluation_metrics
    from medi2i.metrics import builtin_metrics

    for metric in [*builtin_metrics(), *evaluation_metrics()]:
        register(metric)


@hookimpl
def register_commands(cli: click.Group) -> None:
    """Add every ``medi2i`` subcommand (the command modules import heavy code lazily)."""
    from medi2i.cli import (
        adapt_commands,
        average_commands,
        batch_commands,
        cards_commands,
        commands,
        dicom_commands,
        evaluate_commands,
        export_commands,
        mask_commands,
        plugin_commands,
        workflow_commands,
    )

    for module in (
        commands,
        evaluate_commands,
        workflow_commands,
        cards_commands,
        batch_commands,
        dicom_commands,
        adapt_commands,
        mask_commands,
        export_commands,
        average_commands,
    ):
        module.add_to(cli)
    plugin_commands.register(cli)
