"""``python -m lnlib ...``: a thin command line over TrainConfig and the data registry.

    python -m lnlib train --tau 0.04 --loss logitnorm      # flags = TrainConfig fields
    python -m lnlib train --preset cifar10_wrn_logitnorm   # a paper recipe (needs CIFAR-10)
    torchrun --nproc_per_node=4 -m lnlib train --preset cifar10_wrn_logitnorm   # on 4 GPUs (DDP)
    python -m lnlib config --loss ce                       # print the config, its hash and run folder
    python -m lnlib data fetch fashion_mnist               # get a dataset (make data)
    python -m lnlib data fetch svhn textures_dtd isun      # full-scale OOD sets (internet once; MD5-checked)
    python -m lnlib data list
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing

from lnlib.config import CHOICES, PRESETS, TrainConfig, preset
from lnlib.train import TrainingDiverged


def _parse_bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not a boolean; use true or false")


def _parse_optional_str(text: str) -> str | None:
    return None if text.lower() in ("none", "null", "") else text


def _parse_int_tuple(text: str) -> tuple[int, ...]:
    """``80,140``, ``"80 140"``, ``"[80, 140]"`` or ``"(80, 140)"``; ``""`` or ``[]`` for none."""
    try:
        return tuple(int(t) for t in text.strip().strip("[]()").replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of whole numbers; write e.g. 80,140 or "
                                         "\"[80, 140]\"") from None


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    """One ``--field`` per TrainConfig field, typed from the field's annotation, with the field's comment as its
    help, its choices where it has a fixed set, and its default; given flags override the preset."""
    hints = typing.get_type_hints(TrainConfig)
    parsers = {bool: _parse_bool, int: int, float: float, str: str,
               str | None: _parse_optional_str, tuple[int, ...]: _parse_int_tuple}
    metavars = {bool: "true|false", int: "INT", float: "NUMBER", str: "NAME", str | None: "NAME|none",
                tuple[int, ...]: "INT,INT,..."}
    helps = TrainConfig.field_help()
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default", metavar="NAME",
                        help=f"a recipe to start from; choices: {', '.join(sorted(PRESETS))} (default: default)")
    for f in dataclasses.fields(TrainConfig):
        choices = CHOICES.get(f.name)
        listed = f"; choices: {', '.join(str(c).lower() if c is None else str(c) for c in choices)}" if choices else ""
        default = ",".join(map(str, f.default)) or "none" if isinstance(f.default, tuple) else f.default
        parser.add_argument(f"--{f.name}", type=parsers[hints[f.name]], default=argparse.SUPPRESS,
                            metavar=metavars[hints[f.name]],
                            help=f"{helps[f.name]}{listed} (default: {default})".replace("%", "%%"))


def _config_from_args(args: argparse.Namespace) -> TrainConfig:
    overrides = {k: v for k, v in vars(args).items() if k in TrainConfig.field_names()}
    return preset(args.preset, **overrides)


def _print_summary(run) -> None:
    m = run.metrics
    print(f"\nrun: {run.path}\ntest accuracy: {m['test_acc']:.2%}   ({m['epochs']} epochs, "
          f"{m['train_time_s']:.0f} s training)")
    print(f"OOD detection with {m['ood']['score'].upper()} — {m['ood']['convention']}")
    print(f"{'OOD set':<16}{'FPR95 ↓':>9}{'AUROC ↑':>9}{'AUPR-In ↑':>11}")
    for name, r in [*m["ood"]["sets"].items(), ("average", m["ood"]["average"])]:
        print(f"{name:<16}{r['fpr95']:>9.2%}{r['auroc']:>9.2%}{r['aupr_in']:>11.2%}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lnlib", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train (or load the cached run of) one config")
    _add_config_flags(train)
    show = sub.add_parser("config", help="print a config, its hash and its run folder")
    _add_config_flags(show)
    data = sub.add_parser("data", help="datasets")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    fetch = data_sub.add_parser("fetch", help="get ID sets or full-scale OOD sets onto this machine")
    fetch.add_argument("names", nargs="+")
    data_sub.add_parser("list", help="list ID and OOD sets")
    args = parser.parse_args(argv)

    try:
        if args.command in ("train", "config"):
            cfg = _config_from_args(args)
            from lnlib.runs import Run
            from lnlib.train import load_or_train

            if args.command == "config":
                print(json.dumps(cfg.to_dict(), indent=2))
                print(f"hash: {cfg.content_hash()}\nrun folder: {Run.for_config(cfg).path}")
                return 0
            run = load_or_train(cfg)
            from lnlib.distributed import launched

            if launched().is_main:  # under torchrun, one summary
                _print_summary(run)
        elif args.data_command == "list":
            from lnlib.data import ID_SETS, OOD_SETS
            from lnlib.paper_sets import ARCHIVES, cache_path

            print("ID sets: " + ", ".join(ID_SETS) + "\nOOD sets (offline): " + ", ".join(OOD_SETS))
            print("OOD sets (full scale, fetched): " + ", ".join(
                f"{name} ({'cached' if cache_path(name).exists() else 'not fetched'})" for name in ARCHIVES))
        else:
            from lnlib.paper_sets import fetch_set

            for name in args.names:
                print(f"{name}: {fetch_set(name)}")
    except (ValueError, OSError, TrainingDiverged) as err:  # OSError: a full disk, a folder not writable, ...
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
