"""The ``okra`` command line: one thin function per verb.

Each verb parses its options, calls the library, and prints. Errors raised as
:class:`~okrainsight.errors.OkraError` become one line on stderr and a non-zero
exit code; ``--debug`` (anywhere on the line) shows the traceback instead.
"""

from __future__ import annotations

import logging
import sys
import traceback
from pathlib import Path

import typer
from rich.console import Console

from okrainsight import __version__
from okrainsight.errors import OkraError

app = typer.Typer(
    name="okra",
    help=(
        "OkraInsight: tell a good okra from a bad one with a phone camera.\n\n"
        "Render training scenes, label photos with a teacher (SAM), train small students, "
        "segment photos and export to phones.\n\n"
        "Example:  okra synth data/synth --n 200 --seed 0"
    ),
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)


def _exit_on_errors(errors: list[str]) -> None:
    """Print each error as ``okra: error: ...`` on stderr; exit with code 1 when there is any."""
    for line in errors:
        err_console.print(f"okra: error: {line}", markup=False, soft_wrap=True)
    if errors:
        raise typer.Exit(1)


def _verb_group(name: str, help_text: str) -> typer.Typer:
    """A sub-command group of ``okra`` (``okra NAME VERB``) with the house help settings."""
    group = typer.Typer(
        help=help_text,
        no_args_is_help=True,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.add_typer(group, name=name)
    return group


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"okrainsight {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks and debug logging."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    level = logging.DEBUG if debug else (logging.INFO if verbose else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def parse_size(text: str) -> tuple[int, int]:
    """Parse ``"WxH"`` (or a single number for a square) into ``(width, height)``."""
    try:
        if "x" in text.lower():
            w, h = text.lower().split("x", 1)
            size = (int(w), int(h))
        else:
            size = (int(text), int(text))
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a size; write it as WIDTHxHEIGHT, e.g. 512x384") from exc
    if min(size) < 16 or max(size) > 8192:
        raise typer.BadParameter(f"{text!r}: width and height must be between 16 and 8192 pixels")
    return size


# ----------------------------------------------------------------------------------
# Verbs. Each verb lives in one function below; the library does the work.
# ----------------------------------------------------------------------------------


@app.command("convert")
def convert_cmd(
    inputs: list[Path] = typer.Argument(..., help="Image files, folders or glob patterns to convert."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for the JPEGs (sub-folders are kept)."),
    quality: int = typer.Option(92, "--quality", "-q", min=1, max=100, help="JPEG quality, 1..100."),
    recursive: bool = typer.Option(True, "--recursive/--no-recursive", help="Walk sub-folders."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace JPEGs that already exist."),
) -> None:
    """Convert photos (iPhone HEIC, PNG, TIFF, WebP, ...) to upright JPEGs, orientation applied.

    Bad files are reported one line each and the rest converted; exit code 1 if any failed.

    Existing outputs are skipped unless --overwrite.

    Example:  okra convert ~/Pictures/okra --out data/raw/images --quality 92
    """
    from okrainsight.convert import convert_images

    report = convert_images(inputs, out, quality, recursive=recursive, overwrite=overwrite)
    for failure in report.failed:
        err_console.print(f"okra: convert: {failure.message}", markup=False, soft_wrap=True)
    console.print(f"{report.summary()}; output in {out}", markup=False, soft_wrap=True)
    if not report.ok:
        raise typer.Exit(1)


dataset_app = _verb_group(
    "dataset",
    (
        "Check a dataset folder for defects and split it into train/val/test grouped by okra.\n\n"
        "Example:  okra dataset check data/okra && okra dataset split data/okra --val 0.1 --test 0.1"
    ),
)


@dataset_app.command("check")
def dataset_check_cmd(
    root: Path = typer.Argument(..., help="Dataset folder (with images/ inside)."),
    as_json: bool = typer.Option(
        False, "--json", help="Print the defects as a JSON list instead of a table."
    ),
    repair: bool = typer.Option(False, "--repair", help="First cut a torn last line off manifest.jsonl."),
) -> None:
    """Report every defect of a dataset (missing or bad masks, orphans, duplicates, bad prompts...).

    Exit code 0 when the dataset is clean, 1 when any defect is found.

    Example:  okra dataset check data/okra --json > defects.json
    """
    import json as _json
    from collections import Counter

    from rich.table import Table

    from okrainsight.dataset import DatasetLayout, check_dataset

    defects = check_dataset(root, repair=repair, progress=not as_json)
    n_images = len(DatasetLayout(root).image_paths())
    if as_json:
        console.print_json(_json.dumps([d.to_json() for d in defects]))
    elif defects:
        table = Table(title=f"Defects in {root}")
        for col in ("kind", "stem", "message"):
            table.add_column(col, overflow="fold")
        for d in defects:
            table.add_row(d.kind, d.stem, d.message)
        console.print(table)
    if not as_json:
        counts = ", ".join(f"{k}: {n}" for k, n in Counter(d.kind for d in defects).items())
        status = f"{len(defects)} defects ({counts})" if defects else "no defects"
        console.print(f"{n_images} images checked, {status}", markup=False)
    if defects:
        raise typer.Exit(1)


@dataset_app.command("split")
def dataset_split_cmd(
    root: Path = typer.Argument(..., help="Dataset folder (with images/ inside)."),
    val: float = typer.Option(0.1, "--val", min=0.0, max=0.9, help="Share of images for validation."),
    test: float = typer.Option(0.1, "--test", min=0.0, max=0.9, help="Share of images for testing."),
    seed: int = typer.Option(0, "--seed", help="Shuffling seed; the same seed gives the same lists."),
    group_regex: str | None = typer.Option(
        None, "--group-regex", help="Regex on the stem; its first capture group is the okra (group) key."
    ),
) -> None:
    """Write splits/train.txt, val.txt and test.txt, keeping all photos of one okra in one split.

    A stem's group: its groups.csv row (stem,group), else the --group-regex capture.

    Otherwise a rendered scene is its own group, and a photo's is its stem up to the first digits.

    okra_12_tipbreak_int1 and okra_12_tipbend_int1 both belong to group okra_12.

    Example:  okra dataset split data/okra --val 0.1 --test 0.1 --seed 0 --group-regex '^(okra_\\d+)'
    """
    from okrainsight.dataset import SPLIT_NAMES, split_dataset

    if val + test >= 1.0:
        raise typer.BadParameter(f"--val {val} plus --test {test} must leave a share for training")
    result = split_dataset(root, (1.0 - val - test, val, test), seed=seed, group_regex=group_regex)
    groups = result.group_counts()
    for name in SPLIT_NAMES:
        n = len(result.splits[name])
        console.print(
            f"{name:5s} {n:6d} images {groups[name]:6d} groups -> {root}/splits/{name}.txt", markup=False
        )


@app.command("explore")
def explore_cmd(
    root: Path = typer.Argument(..., help="Dataset folder (with images/ inside)."),
    out: Path = typer.Option(..., "--out", "-o", help="HTML file to write; thumbnails go to <name>_files/."),
    thumb_size: int = typer.Option(256, "--thumb-size", min=16, max=1024, help="Longest thumbnail side."),
) -> None:
    """Write a static HTML page (no server needed) with every image, its mask, stats and defects.

    Open the page from disk in any browser; the filter box finds stems and defect kinds.

    Example:  okra explore data/okra --out report.html
    """
    from okrainsight.explore import build_explorer

    report = build_explorer(root, out, thumb_size=thumb_size)
    console.print(
        f"{report.n_images} images, {report.n_defects} defects -> {report.html_path} "
        f"(thumbnails in {report.files_dir})",
        markup=False,
        soft_wrap=True,
    )


@app.command("serve")
def serve_cmd(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; 0.0.0.0 serves phones on the network."
    ),
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535, help="TCP port."),
    data: Path | None = typer.Option(None, "--data", "-d", help="Dataset folder for labelling and captures."),
    model: str = typer.Option("default", "--model", "-m", help="Model folder, its model.onnx, or 'default'."),
    teacher: str = typer.Option("grabcut", "--teacher", help="Teacher for the label page (grabcut, sam...)."),
    https: bool = typer.Option(False, "--https", help="Serve HTTPS with a self-signed certificate (phones)."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", min=0.1, help="Largest accepted upload."),
    timeout: float = typer.Option(30.0, "--timeout", min=1.0, help="Per-request limit in seconds."),
    grader: str = typer.Option(
        "default",
        "--grader",
        help="Tip-break grader whose cnn.onnx the live page runs per pod: folder, 'default' or 'none'.",
    ),
) -> None:
    """Serve the live camera app (model runs in the browser), the label page and the REST API.

    Pages: / live camera, /label click-to-label, /explore gallery, /docs API.
    The live page shows a tender/tough verdict per pod when the grader has a CNN (cnn.onnx).
    Phones need --host 0.0.0.0 --https (the camera opens only over HTTPS).

    Example:  okra serve --host 0.0.0.0 --https --data data/okra --model runs/fast
    """
    try:
        import uvicorn
    except ImportError as exc:
        from okrainsight.errors import MissingDependencyError

        raise MissingDependencyError("uvicorn", "serve") from exc
    from okrainsight.server.app import create_app

    application = create_app(
        data,
        model=model,
        teacher=teacher,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        request_timeout_s=timeout,
        strict_model=model != "default",
        grader=None if grader.lower() == "none" else grader,
    )
    if application.state.okra.model is None:
        problem = application.state.okra.model_error
        err_console.print(f"okra serve: no model, the live page is off: {problem}", markup=False)
    ssl: dict[str, str] = {}
    if https:
        from okrainsight.server.tls import ensure_self_signed

        cert, key = ensure_self_signed()
        ssl = {"ssl_certfile": str(cert), "ssl_keyfile": str(key)}
    scheme = "https" if https else "http"
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    console.print(f"okra serve: {scheme}://{shown}:{port}/  (label: /label, API docs: /docs)", markup=False)
    uvicorn.run(application, host=host, port=port, log_level="warning", **ssl)


@app.command("label")
def label_cmd(
    root: Path = typer.Argument(..., help="Dataset folder (with images/ inside)."),
    teacher: str = typer.Option("sam", "--teacher", "-t", help="Teacher: sam, grabcut or student."),
    model_type: str = typer.Option("vit_h", "--model-type", help="SAM model type: vit_h, vit_l or vit_b."),
    checkpoint: Path | None = typer.Option(
        None, "--checkpoint", help="SAM checkpoint file (sam teacher) or model folder (student teacher)."
    ),
    prompts: Path | None = typer.Option(
        None, "--prompts", help="Prompts JSON {stem: {points, labels, box}}; default DATA/prompts.json."
    ),
    auto_prompt: bool = typer.Option(
        False, "--auto-prompt", help="Propose points where no prompts exist (from --student, else colour)."
    ),
    student: Path | None = typer.Option(
        None, "--student", help="Trained model folder: auto-prompts from its masks and flags disagreement."
    ),
    redo: bool = typer.Option(False, "--redo", help="Relabel images that already have a mask."),
    shard: str = typer.Option("0/1", "--shard", help="Label only shard i of n (i/n), e.g. 0/4."),
    review: bool = typer.Option(
        False, "--review", help="Do not label: list flagged labels, write review.csv."
    ),
    accept: list[str] = typer.Option([], "--accept", help="Accept the label of this stem (repeatable)."),
    device: str = typer.Option("auto", "--device", help="auto (GPU when present), cuda, mps or cpu."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Label every image without a mask with a teacher; resumable, with provenance in manifest.jsonl.

    Writes masks/<stem>.png, soft/<stem>.png and one manifest record per mask. Kill it at any
    moment and run it again: it finishes exactly the rest. With --review it labels nothing and
    lists the labels quality control flagged, most suspicious first, into review.csv; tick the
    accepted column there (or pass --accept STEM) to clear a flag.

    Example:  okra label data/okra --teacher sam --model-type vit_h --checkpoint sam_vit_h_4b8939.pth
    """
    from okrainsight.labeling import label_dataset, parse_shard
    from okrainsight.qc import review as run_review

    if review or accept:
        rows, path = run_review(root, accept=list(accept))
        for r in rows:
            console.print(f"{r.suspicion:7.2f}  {r.stem}  {' '.join(r.flags)}", markup=False)
        console.print(f"{len(rows)} labels to review -> {path}", markup=False)
        return
    from okrainsight.teachers import create_teacher
    from okrainsight.teachers.student import load_student_mask_fn

    kwargs: dict[str, object] = {"device": device}
    if teacher == "sam":
        kwargs.update(model_type=model_type, checkpoint=checkpoint)
    elif teacher == "student":
        kwargs.update(model=checkpoint or student)
    teacher_obj = create_teacher(teacher, **kwargs)
    student_fn = None if student is None else load_student_mask_fn(student)
    report = label_dataset(
        root,
        teacher_obj,
        prompts=prompts,
        auto_prompt=auto_prompt,
        redo=redo,
        shard=parse_shard(shard),
        student=student_fn,
        progress=progress,
    )
    for _stem, message in report.failed:
        err_console.print(f"okra: label: {message}", markup=False, soft_wrap=True)
    console.print(
        f"{len(report.labelled)} labelled, {len(report.completed)} completed, {len(report.skipped)} kept, "
        f"{len(report.failed)} failed, {len(report.flagged)} flagged for review (okra label {root} --review)",
        markup=False,
    )
    if not report.ok:
        raise typer.Exit(1)


interop_app = _verb_group(
    "interop",
    (
        "Move masks between OkraInsight datasets and LabelMe, COCO (RLE) and YOLO segmentation.\n\n"
        "Example:  okra interop to-coco data/okra --out okra_coco.json"
    ),
)


def _interop_done(report: object, what: str) -> None:
    failed = getattr(report, "failed", [])
    for name, message in failed:
        err_console.print(f"okra: interop: {name}: {message}", markup=False, soft_wrap=True)
    console.print(f"{len(getattr(report, 'written', []))} {what}, {len(failed)} failed", markup=False)
    if failed:
        raise typer.Exit(1)


@interop_app.command("from-labelme")
def interop_from_labelme_cmd(
    src: Path = typer.Argument(..., help="Folder of LabelMe .json files (or one file)."),
    data: Path = typer.Option(..., "--data", help="Dataset folder to write images/ and masks/ into."),
    label: list[str] = typer.Option([], "--label", help="Only shapes with this label (repeatable)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace masks that exist."),
) -> None:
    """Import LabelMe polygons as masks.

    Example:  okra interop from-labelme labelme_json/ --data data/okra --label okra
    """
    from okrainsight.interchange import import_labelme

    report = import_labelme(src, data, labels=set(label) or None, overwrite=overwrite)
    _interop_done(report, "masks imported")


@interop_app.command("to-coco")
def interop_to_coco_cmd(
    data: Path = typer.Argument(..., help="Dataset folder."),
    out: Path = typer.Option(..., "--out", "-o", help="COCO JSON file to write."),
) -> None:
    """Export masks as COCO instance segmentation (compressed RLE, one annotation per pod).

    Example:  okra interop to-coco data/okra --out okra_coco.json
    """
    from okrainsight.interchange import export_coco

    _interop_done(export_coco(data, out), f"images exported to {out}")


@interop_app.command("from-coco")
def interop_from_coco_cmd(
    src: Path = typer.Argument(..., help="COCO JSON file (RLE or polygon segmentations)."),
    data: Path = typer.Option(..., "--data", help="Dataset folder to write masks/ into."),
    images: Path | None = typer.Option(
        None, "--images", help="Where the images are (default: JSON's folder)."
    ),
    category: str = typer.Option("okra", "--category", help="Category name to import; '*' for all."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace masks that exist."),
) -> None:
    """Import COCO masks (all annotations of an image joined into its mask).

    Example:  okra interop from-coco okra_coco.json --data data/okra
    """
    from okrainsight.interchange import import_coco

    cat = None if category == "*" else category
    report = import_coco(src, data, images_dir=images, category=cat, overwrite=overwrite)
    _interop_done(report, "masks imported")


@interop_app.command("to-yolo")
def interop_to_yolo_cmd(
    data: Path = typer.Argument(..., help="Dataset folder."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for images/, labels/ and data.yaml."),
) -> None:
    """Export masks as YOLO segmentation polygons (class 0 = okra, coordinates 0..1).

    Example:  okra interop to-yolo data/okra --out okra_yolo/
    """
    from okrainsight.interchange import export_yolo

    _interop_done(export_yolo(data, out), f"label files written to {out}/labels")


@app.command("synth")
def synth_cmd(
    out: Path = typer.Argument(..., help="Dataset folder to write (images/, masks/, instances/, manifest)."),
    n: int = typer.Option(100, "--n", min=0, help="Number of images to render."),
    seed: int = typer.Option(0, "--seed", min=0, help="Base seed; image i uses a seed from (seed, i)."),
    size: str = typer.Option("512x384", "--size", help="Image size WIDTHxHEIGHT."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Processes (default: all CPU cores)."),
    backgrounds: Path | None = typer.Option(None, "--backgrounds", help="Photos to composite pods onto."),
    negatives: Path | None = typer.Option(None, "--negatives", help="Photos without okra (empty masks)."),
    negative_fraction: float = typer.Option(
        0.1, "--negative-fraction", min=0.0, max=1.0, help="Share of images taken from --negatives."
    ),
    kinds: str | None = typer.Option(
        None,
        "--kinds",
        help="Comma-separated scene kinds, e.g. white,pile,plant,negative (default: a mix); "
        "each rendered scene draws one entry, so a kind named twice comes twice as often "
        "(--negatives and --pods images are drawn apart).",
    ),
    include_stem: bool = typer.Option(False, "--include-stem", help="Put the stem in the mask too."),
    pods: Path | None = typer.Option(
        None, "--pods", help="Labelled real photos (images/ + masks/) whose pods are pasted into scenes."
    ),
    pod_fraction: float = typer.Option(
        0.25, "--pod-fraction", min=0.0, max=1.0, help="Share of images with pasted real pods (--pods)."
    ),
) -> None:
    """Render synthetic okra scenes with exact masks (training data, tests, demos).

    Scenes: pods on white, plates, wood, cloth, paper, boards, market piles, hands, the plant,
    and look-alikes that are not okra (beans, chillies, cucumbers, pea pods, gourds, leeks, leaves),
    scattered, in market heaps, or framed whole on white like a shop photo (kind produce).

    Example:  okra synth data/synth --n 2000 --seed 0 --size 512x384 --negatives photos/greens

    Only shop photos of look-alikes:  okra synth data/produce --n 500 --kinds produce

    Three plant scenes and three piles to one white, cloth, wood and negative scene each:
    okra synth data/p --n 3000 --kinds plant,plant,plant,pile,pile,pile,white,cloth,wood,negative

    Real pods too (a folder okra label wrote):  okra synth data/mix --n 2000 --pods data/labelled
    """
    from okrainsight.synth import render_dataset

    wh = parse_size(size)
    kind_list = [k.strip() for k in kinds.split(",") if k.strip()] if kinds else None
    path = render_dataset(
        out,
        n,
        seed,
        wh,
        workers=workers,
        backgrounds=backgrounds,
        negatives=negatives,
        negative_fraction=negative_fraction,
        kinds=kind_list,
        include_stem=include_stem,
        pods=pods,
        pod_fraction=pod_fraction,
    )
    console.print(f"{n} images rendered in {path}", markup=False)


@app.command("segment")
def segment_cmd(
    inputs: list[str] | None = typer.Argument(
        None, help="Photos, folders (recursive), glob patterns and videos (.mp4 .mov .avi .mkv)."
    ),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (required unless --source)."),
    model: str = typer.Option("default", "--model", "-m", help="Built-in name, model folder or .onnx file."),
    threshold: float | None = typer.Option(
        None, "--threshold", help="Okra probability threshold (default: the model card's)."
    ),
    threads: int = typer.Option(2, "--threads", min=1, help="ONNX Runtime threads."),
    source: int | None = typer.Option(
        None, "--source", help="Webcam index for a live window (needs a display)."
    ),
    video_stride: int = typer.Option(1, "--video-stride", min=1, help="Segment every n-th video frame."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
    grader: str = typer.Option(
        "default", "--grader", help="Tip-break grader folder, 'default' (built-in, if installed) or 'none'."
    ),
    zoom: str | None = typer.Option(
        None,
        "--zoom",
        help="How photos are tiled, comma-separated (default: the model card's; the built-in model: 1,2). "
        "1 = the largest tiles of the network input's shape (square) inside the photo, 2 = half that size "
        "(finer detail), "
        "0 = whole photo squeezed into the network's input (fastest with --flips none, e.g. for --source).",
    ),
    flips: str | None = typer.Option(
        None,
        "--flips",
        help="Mirror images whose probabilities are averaged in, comma-separated, or 'none' (default: the "
        "model card's; the built-in model: h,v,hv). h = left-right, v = upside down, hv = both; each "
        "costs one more network run per tile.",
    ),
) -> None:
    """Find okra in photos and videos: masks, overlays, cut-outs, report.html and results.json.

    Runs on ONNX Runtime (no torch). A bad input is listed with its error and the rest go on;
    the exit code is 1 when any input failed.

    Example:  okra segment photos/ clip.mp4 "more/*.jpg" --out results/ --model default
    """
    from okrainsight.errors import ConfigError
    from okrainsight.flips import parse_flips
    from okrainsight.segment import failed_count, segment_camera, segment_inputs
    from okrainsight.tiling import parse_zooms

    if threshold is not None and not 0.0 < threshold < 1.0:
        raise typer.BadParameter("--threshold must lie strictly between 0 and 1", param_hint="--threshold")
    try:
        zooms = None if zoom is None else parse_zooms(zoom)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--zoom") from exc
    try:
        flip_names = None if flips is None else parse_flips(flips)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--flips") from exc
    if source is not None:
        if inputs:
            raise ConfigError("give either input files or --source, not both")
        frames = segment_camera(source, model, threshold, threads=threads, zooms=zooms, flips=flip_names)
        console.print(f"{frames} frames shown", markup=False)
        return
    if not inputs:
        raise ConfigError("no inputs: name photos, folders, globs or videos (or --source N for a webcam)")
    if out is None:
        raise ConfigError("--out DIR is required: the folder for masks, overlays and results.json")
    results = segment_inputs(
        inputs,
        out,
        model,
        threshold,
        threads=threads,
        progress=not no_progress,
        video_stride=video_stride,
        grader=None if grader.lower() == "none" else grader,
        zooms=zooms,
        flips=flip_names,
    )
    images = results["images"]
    for item in images:
        if item.get("error"):
            err_console.print(f"okra: error: {item['error']}", markup=False, soft_wrap=True)
    failed = failed_count(results)
    found = sum(1 for i in images if i.get("okra_found"))
    console.print(
        f"{len(images) - failed} of {len(images)} inputs segmented, {found} with okra; "
        f"report: {out / 'report.html'}",
        markup=False,
    )
    if failed:
        raise typer.Exit(1)


@app.command("models")
def models_cmd(
    paths: list[str] | None = typer.Argument(None, help="Model folders or .onnx files to list as well."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the built-in models and any given model folders: arch, input size, size, metrics.

    Example:  okra models runs/lraspp-small
    """
    import json

    from rich.table import Table

    from okrainsight.runtime import describe_model, list_builtin_models

    specs = [*list_builtin_models(), *(paths or [])]
    infos = [describe_model(s) for s in specs]
    if as_json:
        console.print_json(json.dumps(infos))
        return
    if not infos:
        console.print("no built-in models installed yet; name model folders to list them", markup=False)
        return
    table = Table(title="Models")
    for col in ("model", "arch", "input", "parameters", "files", "metrics"):
        table.add_column(col)
    for spec, info in zip(specs, infos, strict=True):
        files = ", ".join(
            f"{k} {v / 1e6:.2f} MB" if v >= 100_000 else f"{k} {v / 1e3:.1f} kB"
            for k, v in info["files"].items()
        )
        metrics = ", ".join(
            f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v}" for k, v in info["metrics"].items()
        )
        params = info["parameters"]
        table.add_row(
            f"{info['name']} ({spec})",
            info["arch"],
            "x".join(str(v) for v in info["input_size"]),
            f"{params:,}" if isinstance(params, int) else "-",
            files,
            metrics or "-",
        )
    console.print(table)


@app.command("train")
def train_cmd(
    data: Path = typer.Argument(..., help="Dataset folder (images/, masks/, optional soft/ and splits/)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder to create (or to resume)."),
    arch: str | None = typer.Option(None, "--arch", help="Student architecture (see 'okra models')."),
    config: Path | None = typer.Option(None, "--config", "-c", help="YAML config; flags override it."),
    epochs: int | None = typer.Option(None, "--epochs", help="Number of epochs."),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Images per batch (per device)."),
    lr: float | None = typer.Option(None, "--lr", help="Peak learning rate."),
    optimizer: str | None = typer.Option(None, "--optimizer", help="adamw (cosine) or sgd (poly)."),
    input_size: str | None = typer.Option(None, "--input-size", help="Network input WIDTHxHEIGHT."),
    devices: str | None = typer.Option(None, "--devices", help="Lightning devices: auto, 1, 4, '0,1'."),
    accelerator: str | None = typer.Option(None, "--accelerator", help="cpu, gpu or auto."),
    strategy: str | None = typer.Option(None, "--strategy", help="Lightning strategy, e.g. ddp."),
    num_nodes: int | None = typer.Option(None, "--num-nodes", help="Machines for multi-node DDP."),
    precision: str | None = typer.Option(None, "--precision", help="e.g. 32-true, bf16-mixed (auto)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT/checkpoints/last.ckpt."),
    init_from: Path | None = typer.Option(
        None, "--init-from", help="Fine-tune: start from this model folder's weights (same --arch)."
    ),
    freeze: list[str] | None = typer.Option(
        None,
        "--freeze",
        help="Keep these parts fixed, by parameter-name prefix (repeatable), e.g. backbone.",
    ),
    freeze_batchnorm: bool | None = typer.Option(
        None,
        "--freeze-batchnorm/--train-batchnorm",
        help="Keep batch-norm statistics and scales as the --init-from model has them.",
    ),
    max_minutes: float | None = typer.Option(None, "--max-minutes", help="Stop after this much time."),
    soft_weight: float | None = typer.Option(None, "--soft-weight", help="Weight of distillation on soft/."),
    negatives: list[Path] | None = typer.Option(
        None, "--negatives", help="Folder of images without okra (repeatable)."
    ),
    workers: int | None = typer.Option(None, "--workers", help="Data-loading worker processes."),
    augment_on: str | None = typer.Option(
        None,
        "--augment-on",
        help="Augment in the loader workers (loader) or whole batches on the GPU (device).",
    ),
    seed: int | None = typer.Option(None, "--seed", help="Random seed."),
) -> None:
    """Train a student on a dataset's grouped split (PyTorch Lightning); the best weights land in OUT.

    Example:  okra train data/synth --arch okra_lraspp_small --out runs/small --config configs/default.yaml

    Several GPUs:  okra train data/synth --out runs/ddp --devices 4 --strategy ddp

    A GPU with few CPU cores (augment on the GPU):  okra train data/synth --out runs/gpu --augment-on device

    Fine-tune only the head of the default model:
    okra train data/more --out runs/head --init-from default --freeze backbone --freeze-batchnorm
    """
    try:
        from okrainsight.training import make_config, train
    except ImportError as exc:
        from okrainsight.errors import MissingDependencyError

        raise MissingDependencyError(exc.name or "lightning", "train") from exc
    overrides = {
        "data": str(data),
        "out": str(out),
        "arch": arch,
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "optimizer": optimizer,
        "input_size": parse_size(input_size) if input_size else None,
        "devices": devices,
        "accelerator": accelerator,
        "strategy": strategy,
        "num_nodes": num_nodes,
        "precision": precision,
        "resume": resume or None,
        "init_from": str(init_from) if init_from else None,
        "freeze": list(freeze) if freeze else None,
        "freeze_batchnorm": freeze_batchnorm,
        "max_minutes": max_minutes,
        "soft_weight": soft_weight,
        "negatives": [str(n) for n in negatives] if negatives else None,
        "workers": workers,
        "augment_on": augment_on,
        "seed": seed,
    }
    cfg = make_config(config, overrides)
    run = train(cfg)
    from okrainsight.checkpoint import CARD_FILE, load_card

    if (run / CARD_FILE).is_file():
        metrics = load_card(run).metrics
        iou_text = f"{metrics['val_iou']:.4f}" if isinstance(metrics.get("val_iou"), float) else "n/a"
        console.print(f"trained {cfg.arch}: best val IoU {iou_text}; model and curves in {run}", markup=False)


@app.command("eval")
def eval_cmd(
    model: Path = typer.Argument(..., help="Model folder (card.json + model.safetensors) or run folder."),
    data: Path = typer.Argument(..., help="Dataset folder."),
    split: str = typer.Option("test", "--split", help="train, val, test or all."),
    tolerance: int = typer.Option(2, "--tolerance", min=0, help="Boundary F-score tolerance in pixels."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (CSV, summary, gallery)."),
    ground_truth: Path | None = typer.Option(
        None, "--ground-truth", help="Folder of exact masks <stem>.png when DATA/masks/ are a teacher's."
    ),
    gallery: int = typer.Option(8, "--gallery", min=0, help="Worst images shown in gallery.png."),
    latency_runs: int = typer.Option(20, "--latency-runs", min=1, help="Timed forward passes."),
) -> None:
    """Score a model on a dataset split: IoU, Dice, precision, recall, boundary F; size; latency.

    Example:  okra eval runs/small data/synth --split test --out runs/small/eval
    """
    from rich.table import Table

    from okrainsight.evaluate import evaluate

    res = evaluate(
        model,
        data,
        split=split,
        tolerance=tolerance,
        out=out,
        ground_truth=ground_truth,
        gallery=gallery,
        latency_runs=latency_runs,
    )
    what = "accuracy vs ground truth" if res.reference == "ground_truth" else "fidelity vs teacher labels"
    table = Table(title=f"{res.model['name']} on {data} ({split}): {what}")
    table.add_column("set")
    for col in ("images", "IoU", "Dice", "precision", "recall", f"boundary F@{tolerance}px", "mean IoU"):
        table.add_column(col, justify="right")

    def add(label: str, s: dict | None) -> None:
        if s and s.get("images"):
            vals = [s[k] for k in ("iou", "dice", "precision", "recall", "boundary_f", "mean_iou")]
            table.add_row(label, str(int(s["images"])), *(f"{v:.4f}" for v in vals))

    add("student" if res.reference == "ground_truth" else "student vs teacher", res.summary)
    add("student vs teacher", res.fidelity)
    add("teacher", res.teacher_accuracy)
    console.print(table)
    m = res.model
    console.print(
        f"model: {m['arch']} {m['parameters']:,} parameters, {m['bytes_fp32'] / 1e6:.2f} MB fp32, "
        f"{m['bytes_fp16'] / 1e6:.2f} MB fp16; PyTorch CPU latency {m['latency_ms_cpu_median']:.1f} ms "
        f"(median, {m['input_size'][0]}x{m['input_size'][1]}, {m['torch_threads']} threads)",
        markup=False,
    )
    worst = res.worst(5)
    if worst:
        console.print("worst: " + ", ".join(f"{r['stem']} ({r['iou']:.3f})" for r in worst), markup=False)
    console.print(f"per-image CSV, summary.json and gallery.png in {res.out}", markup=False)
    _exit_on_errors(res.errors)


grade_app = _verb_group(
    "grade",
    (
        "The tip-break verdict: train and evaluate the tender/tough grader on labelled photos.\n\n"
        "Example:  okra grade train photos/ --out runs/grader --model default"
    ),
)


@grade_app.command("train")
def grade_train_cmd(
    data: Path = typer.Argument(
        ..., help="Labelled photos: labels.csv, tender/ + tough/ folders, or tipbreak/tipbend names."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Grader folder to write (grader.json + grader.onnx)."),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Segmentation model for photos without masks/<stem>.png."
    ),
    folds: int = typer.Option(5, "--folds", min=2, help="Grouped cross-validation folds."),
    test_fraction: float = typer.Option(
        0.2, "--test-fraction", help="Share of okra held out for test metrics."
    ),
    seed: int = typer.Option(0, "--seed", help="Split seed."),
    cnn: bool = typer.Option(False, "--cnn", help="Also train the small CNN on masked pod crops (torch)."),
    cnn_epochs: int = typer.Option(30, "--cnn-epochs", min=1, help="CNN training epochs."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Train a grader: segment each photo's pod, measure it, fit a calibrated model grouped by okra.

    Example:  okra grade train my-okra/ --out runs/grader --model default --folds 5
    """
    from okrainsight.grading.jobs import train_grader

    if not 0.0 <= test_fraction < 0.9:
        raise typer.BadParameter("must lie in [0, 0.9)", param_hint="--test-fraction")
    m = train_grader(
        data,
        out,
        model=model,
        folds=folds,
        test_fraction=test_fraction,
        seed=seed,
        cnn=cnn,
        cnn_epochs=cnn_epochs,
        progress=not no_progress,
    )
    test = m.get("test") or {}
    console.print(
        f"grader saved to {out}: {m['n_train_pods']} training pods, grouped-CV ROC-AUC {m['cv_auc']:.3f} "
        f"({m['model_form']}, C={m['C']:g})"
        + (f"; held-out ROC-AUC {test['roc_auc']:.3f}" if test.get("roc_auc") is not None else ""),
        markup=False,
    )
    if m["n_errors"]:
        raise typer.Exit(1)


@grade_app.command("eval")
def grade_eval_cmd(
    grader: str = typer.Argument(..., help="Grader folder (or 'default')."),
    data: Path = typer.Argument(..., help="Labelled photos (as for 'okra grade train')."),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for pods.csv, metrics.json, reliability.png."
    ),
    model: str | None = typer.Option(
        None, "--model", "-m", help="Segmentation model for photos without masks."
    ),
    include_train: bool = typer.Option(
        False, "--include-train", help="Also score okra the grader was trained on."
    ),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Evaluate a grader: ROC-AUC, accuracy, confusion matrix, reliability diagram, per-pod CSV.

    Example:  okra grade eval runs/grader my-okra/ --out runs/grader/eval
    """
    from okrainsight.grading.jobs import evaluate_grader

    m = evaluate_grader(grader, data, out, model=model, include_train=include_train, progress=not no_progress)
    auc = "n/a (one class)" if m["roc_auc"] is None else f"{m['roc_auc']:.3f}"
    acc = "n/a" if m["accuracy"] is None else f"{m['accuracy']:.3f}"
    cm = m["confusion_matrix"]["rows_true_cols_predicted"]
    console.print(
        f"{m['n']} pods: ROC-AUC {auc}, accuracy {acc}, confusion [[TN FP] [FN TP]] = {cm}; "
        f"{m['n_without_pod']} photo(s) without a plausible pod",
        markup=False,
    )
    _exit_on_errors(m["errors"])


@grade_app.command("train-synth")
def grade_train_synth_cmd(
    out: Path = typer.Argument(..., help="Grader folder to write."),
    n: int = typer.Option(600, "--n", min=10, help="Rendered scenes with pods."),
    n_negative: int = typer.Option(
        200, "--n-negative", min=0, help="Rendered look-alike scenes for the gate."
    ),
    seed: int = typer.Option(0, "--seed", help="Base seed (reproducible)."),
    size: str = typer.Option("256x192", "--size", help="Render size WxH."),
    cnn: bool = typer.Option(
        False, "--cnn", help="Also train the small CNN on masked pod crops (torch; the live page runs it)."
    ),
    cnn_epochs: int = typer.Option(30, "--cnn-epochs", min=1, help="CNN training epochs."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Train the demonstration grader on rendered pods (tenderness from the renderer's age cue).

    Example:  okra grade train-synth src/okrainsight/models/grader-default --n 600 --seed 0
    """
    from okrainsight.grading.jobs import train_synthetic_grader

    g = train_synthetic_grader(
        out,
        n=n,
        n_negative=n_negative,
        seed=seed,
        size=parse_size(size),
        cnn=cnn,
        cnn_epochs=cnn_epochs,
        progress=not no_progress,
    )
    m = g.card["metrics"]
    extra = ""
    if cnn:
        c = g.card["cnn"]

        def auc(v: float | None) -> str:
            return "n/a" if v is None else f"{v:.3f}"

        extra = (
            f"; CNN held-out ROC-AUC {auc(c['holdout_auc'])} (features {auc(c['holdout_auc_features_oof'])}, "
            f"combined {auc(c['holdout_auc_combined'])})"
        )
    console.print(
        f"grader saved to {out}: {m['n_pods']} rendered pods, grouped-CV ROC-AUC {m['cv_auc']:.3f}, "
        f"okra vs look-alike {m['okra_vs_lookalike_cv_auc']:.3f}" + extra,
        markup=False,
    )


@app.command("export")
def export_cmd(
    model: str = typer.Argument(
        ..., help="Run folder, model folder (card.json + model.safetensors) or 'default'."
    ),
    fmt: str = typer.Option(..., "--format", "-f", help="onnx, coreml, executorch or torchscript."),
    out: Path = typer.Option(..., "--out", "-o", help="Output file (.onnx .mlpackage .pte .pt) or folder."),
    fp16: bool = typer.Option(False, "--fp16", help="ONNX: fp16 weights; Core ML: fp16 compute precision."),
    int8: Path | None = typer.Option(
        None, "--int8", help="ONNX only: static int8 quantisation calibrated on this folder of images."
    ),
    int8_weights: bool = typer.Option(
        False,
        "--int8-weights",
        help="ONNX only: int8 convolution weights (a quarter of the bytes), float32 compute; no calibration.",
    ),
    size: str | None = typer.Option(
        None, "--size", help="Export at WIDTHxHEIGHT instead of the card's size."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    grader: str | None = typer.Option(
        None,
        "--grader",
        help="Also export this grader's pod CNN (folder or 'default') into grader/ beside the model.",
    ),
) -> None:
    """Export a model for phones and browsers, with pre-processing inside and a parity check.

    The exported model takes an RGB image at the model's input size (uint8 NHWC; Core ML: an
    ImageType) and returns the okra probability and mask. Parity against PyTorch (mask IoU >= 0.99;
    fp16/int8/int8 weights: at most 1 IoU point below fp32) is checked right after writing; a failed check
    exits non-zero and leaves no file.

    With --grader DIR the grader's CNN goes into grader/ next to the model file: cnn.onnx (and
    cnn.mlpackage for --format coreml) with grader.json, each parity-checked against PyTorch.

    Example:  okra export runs/small --format coreml --fp16 --out dist/models/okra.mlpackage
    """
    import json

    from okrainsight.export import export_grader, export_model, load_export_source

    net, card = load_export_source(model)
    res = export_model(
        net,
        card,
        fmt.lower(),
        out,
        fp16=fp16,
        int8_calib=int8,
        int8_weights=int8_weights,
        size=parse_size(size) if size else None,
    )
    graded = None
    if grader is not None:
        graded = export_grader(grader, res.path.parent / "grader", coreml=fmt.lower() == "coreml", fp16=fp16)
    if as_json:
        body = res.to_dict()
        if graded is not None:
            body["grader"] = graded.to_dict()
        console.print_json(json.dumps(body, default=str))
        return
    p = res.parity
    check = (
        f"parity IoU {p.iou:.4f}, max probability difference {p.max_abs_diff:.2e} on {p.n_images} images"
        if p.n_images
        else f"parity: {res.details.get('parity_checked', 'no runtime on this machine')}"
    )
    if "drop_points" in res.details:
        d = res.details
        check += (
            f"; IoU {d['iou_fp32']:.4f} fp32 -> {d['iou']:.4f} {d['precision']} "
            f"(drop {d['drop_points']:.2f} points)"
        )
    console.print(f"wrote {res.path} ({res.bytes / 1e6:.2f} MB, {res.format}): {check}", markup=False)
    if graded is not None:
        checks = ", ".join(
            f"{k} "
            + (f"max difference {v['max_abs_diff']:.1e}" if "max_abs_diff" in v else v["parity_checked"])
            for k, v in graded.parity.items()
        )
        console.print(f"wrote grader CNN into {graded.folder}: {checks}", markup=False)


@app.command("average")
def average_cmd(
    models: list[str] = typer.Argument(..., help="Two or more run or model folders of one architecture."),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Model folder to write (model.safetensors + card.json)."
    ),
    weights: str | None = typer.Option(
        None, "--weights", "-w", help="Comma-separated weight per model, e.g. 2,1 (default: equal)."
    ),
) -> None:
    """Average the weights of fine-tunes of one starting point (a "model soup").

    Runs fine-tuned from the same --init-from with other data or seeds usually average into a
    model at least as good as each and steadier between runs. The card lists every source;
    export the result with okra export. Models of different architectures are refused.

    Example:  okra average runs/ft-seed0 runs/ft-seed1 --out runs/soup

    Then:     okra export runs/soup --format onnx --out runs/soup/model.onnx
    """
    from okrainsight.average import average_models

    try:
        w = [float(v) for v in weights.split(",")] if weights else None
    except ValueError:
        _exit_on_errors([f"--weights must be comma-separated numbers like 2,1, got {weights!r}"])
        return
    folder = average_models(models, out, w)
    console.print(f"wrote {folder}: the mean of {len(models)} models", markup=False, soft_wrap=True)


@app.command("benchmark")
def benchmark_cmd(
    models: list[str] | None = typer.Option(
        None, "--models", "-m", help="Registry names, model folders or 'default' (repeat or comma-separate)."
    ),
    formats: str = typer.Option(
        "onnx,executorch", "--formats", help="Comma-separated: onnx, executorch, torchscript, coreml."
    ),
    size: int = typer.Option(256, "--size", min=16, help="Square input side in pixels."),
    runs: int = typer.Option(30, "--runs", min=1, help="Timed frames per model and format."),
    threads: int = typer.Option(2, "--threads", min=1, help="Runtime threads."),
    out: Path = typer.Option(Path("benchmark"), "--out", "-o", help="Folder for benchmark.md/.json/.png."),
    no_progress: bool = typer.Option(False, "--no-progress", help="Hide the progress bar."),
) -> None:
    """Export students to each format and measure size, latency, fps and IoU side by side.

    Without --models: this project's students and the original's (deeplabv3_mobilenet_v3_large,
    u2netp, u2net), untrained (low IoU is expected; pass trained run folders to compare accuracy).

    Example:  okra benchmark --models okra_lraspp_small,u2netp --formats onnx,executorch --out bench
    """
    from okrainsight.bench import DEFAULT_MODELS, benchmark, markdown_table

    names = [m.strip() for item in (models or []) for m in item.split(",") if m.strip()] or list(
        DEFAULT_MODELS
    )
    fmts = [f.strip().lower() for f in formats.split(",") if f.strip()]
    report = benchmark(names, fmts, size=size, runs=runs, out=out, threads=threads, progress=not no_progress)
    console.print(markdown_table(report.rows), markup=False, soft_wrap=True)
    console.print(f"table, JSON and chart in {out}", markup=False)
    _exit_on_errors(report.errors)


@app.command("pipeline")
def pipeline_cmd(
    config: Path = typer.Argument(..., help="Pipeline YAML (see configs/pipeline.yaml)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Output folder (default: the config's out)."),
    force: bool = typer.Option(False, "--force", help="Remove earlier outputs and redo every stage."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    """Run the distillation loop end to end: render or read images, label with a teacher, check,
    split, train a student, evaluate (fidelity to the teacher, accuracy against ground truth), export ONNX.

    Stages done in OUT are skipped (a rerun continues); writes OUT/pipeline_report.json and .md.

    Example:  okra pipeline configs/pipeline.yaml --out runs/pipeline
    """
    from okrainsight.pipeline import load_pipeline_config, run_pipeline

    overrides = None if progress else {"progress": False}
    report = run_pipeline(
        load_pipeline_config(config, overrides),
        out=out,
        force=force,
        echo=lambda line: console.print(line, markup=False),
    )
    m = report.metrics

    def fmt(v: object) -> str:
        return "n/a" if v is None else f"{v:.3f}"

    console.print(
        f"fidelity (student vs teacher) IoU {fmt(m['fidelity_iou'])}, teacher vs ground truth "
        f"{fmt(m['teacher_gt_iou'])}, student vs ground truth {fmt(m['student_gt_iou'])}, "
        f"ONNX parity {fmt(m['onnx_parity_iou'])} ({report.seconds:.0f} s)",
        markup=False,
    )
    console.print(f"report: {report.out / 'pipeline_report.md'}", markup=False)


# --- end of verbs ---


def main(argv: list[str] | None = None) -> None:
    """Console entry point: run the app (click's standalone mode sets the exit code), turning
    :class:`OkraError` and :class:`OSError` (unwritable output and the like) into a one-line
    message on stderr and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, prog_name="okra")
    except OkraError as exc:
        if debug:
            traceback.print_exc()
        err_console.print(f"okra: error: {exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:  # an output folder that cannot be made, a full disk, no permission
        if debug:
            traceback.print_exc()
        where = f"{exc.filename}: " if exc.filename else ""
        err_console.print(f"okra: error: {where}{exc.strerror or exc}", markup=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("okra: interrupted")
        sys.exit(130)


__all__ = ["app", "main", "parse_size", "console", "err_console"]
