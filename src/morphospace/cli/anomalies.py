"""``morphospace anomalies RUN``: the strangest galaxies by the form anomaly score; tags re-rank the rest."""

from __future__ import annotations

import logging

from ..errors import UserError
from .options import common, printable, stage

log = logging.getLogger("morphospace")

NAME = "anomalies"


def add_parser(sub) -> None:
    """Add the ``anomalies`` sub-command to ``sub``."""
    p = stage(sub, NAME, "the strangest galaxies by form; tag some interesting or boring to re-rank the rest",
              "morphospace anomalies runs/gz1 --top 20 --interesting 587722981736120347 --boring 587722981741363294")
    p.add_argument("--top", type=int, default=20, help="how many galaxies to list (default 20)")
    p.add_argument("--interesting", nargs="+", action="extend", default=[], metavar="ID",
                   help="tag these galaxies interesting: galaxies like them rise (repeatable)")
    p.add_argument("--boring", nargs="+", action="extend", default=[], metavar="ID",
                   help="tag these galaxies boring: galaxies like them fall (repeatable)")
    p.add_argument("--untag", nargs="+", action="extend", default=[], metavar="ID", help="remove these galaxies' tags")
    common(p, config=False)


def _top(table, n: int) -> list[str]:
    """Ids of the ``n`` untagged galaxies with the highest current score."""
    rest = table[table["tag"].astype(str) == ""] if "tag" in table.columns else table
    return rest.sort_values("score", ascending=False, kind="stable")["id"].astype(str).head(n).tolist()


def _ids(ids: list[str]) -> str:
    shown = ", ".join(printable(i) for i in ids[:10])
    return shown + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")


def run(args, run) -> int:
    """Tag (when asked), re-rank, print what changed and the top ``args.top`` untagged galaxies."""
    from ..analysis.anomaly import anomaly_run, saved_random_state
    from ..analysis.anomaly_tags import TAGS_FILE, checked_request, read_tags, update_tags
    from ..analysis.labels import label_columns

    if args.top < 1:
        raise UserError(f"--top must be at least 1, got {args.top}")
    if "form" not in run.embeddings():
        note = run.pixel_pca_note() or "model.preset = form, then `morphospace train` and `morphospace embed`"
        raise UserError(f"no form embedding in {run.path}: the anomaly score needs the form-first model ({note})")
    from ..pipeline.stages import trained_preset
    from ..vade.io import model_file

    preset = trained_preset(model_file(run)) if model_file(run).is_file() else ""
    if preset and preset != "form":  # the form embedding is an earlier model's: its scores were listed as the run's
        raise UserError(f"the run's model is of the {preset} preset, which has no form embedding (the one in "
                        f"{run.path} is an earlier model's): the anomaly score needs the form-first model "
                        "(model.preset = form, then `morphospace train` and `morphospace embed`)")
    checked_request(run, args.interesting, args.boring, args.untag)  # a mistake changes nothing
    from ..vade.io import embeddings_outdated

    if (why := embeddings_outdated(run)) is not None:  # the form embedding is the model's: scored, said
        log.warning("the form embedding scored is not that of the run's model: %s (run `morphospace embed %s`, "
                    "then this again)", why, run.path)
    seed = saved_random_state(run)
    before = anomaly_run(run, random_state=seed)  # refreshed: a re-embedded run or tags edited by hand
    old = read_tags(run)
    old_tags = dict(zip(old["id"], old["tag"]))
    tagging = args.interesting or args.boring or args.untag
    table = before
    if tagging:
        tags = update_tags(run, args.interesting, args.boring, args.untag)
        table = anomaly_run(run, random_state=seed)
        new_tags = dict(zip(tags["id"], tags["tag"]))
        for tag in ("interesting", "boring"):
            changed = [i for i, t in new_tags.items() if t == tag and old_tags.get(i) != tag]
            if changed:
                print(f"tagged {tag}: {_ids(changed)}")
        removed = [i for i in old_tags if i not in new_tags]
        if removed:
            print(f"untagged: {_ids(removed)}")
        untouched = [str(i) for i in args.untag or () if str(i) not in old_tags]
        if untouched:  # said: an untag of a galaxy without a tag did nothing without a word
            print(f"not tagged, so nothing to untag: {_ids(untouched)}")
        n_int = sum(t == "interesting" for t in new_tags.values())
        print(f"{len(new_tags)} tags in force ({n_int} interesting, {len(new_tags) - n_int} boring) in "
              f"{run.path / TAGS_FILE}")
        was, now = _top(before, args.top), _top(table, args.top)
        entered = [i for i in now if i not in was]
        left = [i for i in was if i not in now and i not in new_tags]  # not those just tagged: listed above
        if entered or left:
            print(f"top {args.top} untagged: {len(entered)} entered ({_ids(entered)}); {len(left)} fell out "
                  f"({_ids(left)})")
        else:
            print(f"top {args.top} untagged: unchanged")
    order = _top(table, args.top)
    if not order:  # a pandas "Empty DataFrame" dump said nothing
        print(f"every galaxy of {run.path} is tagged: no untagged galaxy left to rank (--untag ID frees one)")
        return 0
    by_id = table.set_index(table["id"].astype(str))
    shown = by_id.loc[order, ["score", "form_anomaly_rank", "form_anomaly", "relevance"]].reset_index()
    shown.insert(0, "rank", range(1, len(shown) + 1))
    cat = run.cube_catalogue()
    cat = cat.assign(id=cat["id"].astype(str)).drop_duplicates("id").set_index("id")
    for col in label_columns(cat.reset_index())[:3]:
        shown[col] = cat[col].reindex(order).to_numpy()
    shown["id"] = shown["id"].map(printable)
    print(f"the {len(shown)} strangest untagged galaxies (score = form anomaly rank x 2 x relevance to the tags):")
    print(shown.round(4).to_string(index=False))
    return 0
