"""The ``medi2i cards check`` command: validate data cards and model cards.

Heavy modules are imported inside the command, so adding it to the CLI costs
``medi2i --help`` nothing.
"""

from __future__ import annotations

from pathlib import Path

import click

from medi2i.errors import InputError


def add_to(group: click.Group) -> None:
    """Add a new ``cards`` command group to ``group``."""
    group.add_command(cards_group())


def cards_group() -> click.Group:
    """A new ``cards`` group holding ``check``."""
    return click.Group("cards", commands=[cards_check_command], help="Data cards and model cards.")


@click.command("check")
@click.argument("folder", type=click.Path(path_type=Path), default=Path("data_cards"))
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MEDI2I_DATA_DIR",
    default=None,
    help=(
        "Also check the files the data cards name (real or simulated) here: SHA-256, shape "
        "and spacing [default: $MEDI2I_DATA_DIR]."
    ),
)
@click.option(
    "--data-cards",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("data_cards"),
    show_default=True,
    help="For a trained-model FOLDER: the data cards its card may name.",
)
def cards_check_command(folder: Path, data_dir: Path | None, data_cards: Path) -> None:
    """Validate every card in FOLDER (default: data_cards) and their references.

    FOLDER may also be a trained-model folder: its card.yaml is checked, and the data
    cards it names must be in --data-cards.
    """
    from medi2i.card_checks import check_cards, check_model_card, named_data_files
    from medi2i.model_folder import MANIFEST

    if not folder.exists():
        raise InputError(f"{folder} does not exist; give a folder of cards or a model folder")
    if folder.is_file():
        raise InputError(
            f"{folder} is a file; give a folder of cards or a model folder (unzip a zipped "
            "model first)"
        )
    if (folder / MANIFEST).is_file():
        problems = check_model_card(folder, data_cards=data_cards)
        # without the folder, a card passes only when it names no data card
        checked = (
            f"its data cards in {data_cards}" if data_cards.is_dir() else "no data cards named"
        )
    else:
        problems = check_cards(folder, data_dir=data_dir)
        checked = _files_checked(named_data_files(folder), data_dir)
    for problem in problems:
        click.echo(str(problem), err=True)
    if problems:
        raise InputError(f"{len(problems)} problem(s) in the cards of {folder}; fix them and rerun")
    click.echo(f"cards in {folder} are valid ({checked})")


def _files_checked(named: list[str], data_dir: Path | None) -> str:
    """What the data-file checks covered, for the closing line: never "with data
    files" when no file was checked."""
    if data_dir is None:
        return "data files not checked: give --data-dir"
    if not named:
        return f"no card names a data file, so none was checked in {data_dir}"
    return f"{len(named)} data file(s) checked in {data_dir}"
