"""Every command that README.md, config/README.md and docs/*.md show is run, so a broken instruction fails here.

Each page's fenced ```bash blocks run in order, each as a bash script, in a fresh copy of the project (the
workflow and configs, as tests/workflow_helpers.make_workdir; plus the package and the tests for a page that
changes them). `python -m ant ...` and the shell commands run for real, offline. `snakemake` is a shell function
that records its arguments; once a page's blocks have run, its recorded calls run as dry runs (`-n`), several in
one interpreter and the pages in parallel: a dry run is mostly Snakemake's start-up (and, where a SLURM client
finds no controller, seconds of waiting for it).

Markers, an HTML comment right before a block:
  <!-- not run: REASON -->       the block needs what a fresh checkout lacks (a cluster, the hub); REASON says what
  <!-- test setup: COMMANDS -->  run COMMANDS first (e.g. the placeholder files a dry run needs), unseen by readers
  <!-- apply: ... -->            docs/add-a-method.md's code, written into its copy before its commands run:
                                 `create PATH`, `insert into PATH after the line: TEXT`, `merge into PATH under: KEY`
A block whose commands call a program outside ALLOWED is not run at all: it fails the static test instead.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from tests.workflow_helpers import ROOT, make_workdir

PAGES = [ROOT / "README.md", ROOT / "config/README.md", *sorted((ROOT / "docs").glob("*.md"))]
# programs a runnable block may call: the workflow, our commands, and harmless shell built-ins and tools
ALLOWED = {"snakemake", "python", "mkdir", "cat", "cp", "ln", "echo", "printf", "ls", "head", "tail", "touch", "cd"}
KEYWORDS = {"for", "do", "done", "then", "fi", "if", "while", "export"}
FENCE = re.compile(r"^( *)```(\w*)\s*$")  # also indented, inside a list item
COMMENT = re.compile(r"^<!--\s*(.*?)\s*-->$")
HEREDOC = re.compile(r"<<-?\s*['\"]?(\w+)['\"]?")
# records a call instead of running it: its folder and arguments, NUL-separated, one file per call
PREAMBLE = """set -euo pipefail
snakemake() {
  { printf '%s\\0' "$ANT_DOCS_BLOCK" "$PWD"; printf '%s\\0' "$@"; } > "$(mktemp "$ANT_DOCS_CALLS/call.XXXXXX")"
}
"""
PAGE_TIMEOUT_S = 300
DRY_RUNS_PER_PROCESS = 5
# runs recorded calls (files: block, folder, arguments, NUL-separated) as dry runs in this one interpreter
DRY_RUNNER = """
import os, sys, traceback
from snakemake.cli import main

for call in sys.argv[1:]:
    _, cwd, *args = open(call, "rb").read().decode().split("\\0")[:-1]
    os.chdir(cwd)
    print("\\0CALL", flush=True)
    try:
        main(["-n", *args])
        status = 0
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else int(stop.code is not None)
    except Exception:
        traceback.print_exc()
        status = 1
    print(f"\\0EXIT {status}", flush=True)
"""


@dataclass
class Block:
    page: Path  # the Markdown file
    line: int  # 1-based line of the opening fence
    lang: str  # the fence's info string: bash, python, yaml, ...
    text: str  # the block's lines, a list item's indentation removed
    comments: list[str] = field(default_factory=list)  # the HTML comments right before it, without <!-- -->

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def directive(self, name: str) -> str | None:
        """The text after `name:` of this block's marker comment, or None."""
        for comment in self.comments:
            if comment.startswith(f"{name}:"):
                return comment.removeprefix(f"{name}:").strip()
        return None


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a Markdown page, each with the HTML comments right before it."""
    lines, found, i = page.read_text().splitlines(), [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent = len(match[1])
        end = next(j for j in range(i + 1, len(lines)) if lines[j].strip().startswith("```"))
        comments, k = [], i - 1
        while k >= 0 and (not lines[k].strip() or COMMENT.match(lines[k].strip())):
            if lines[k].strip():
                comments.insert(0, COMMENT.match(lines[k].strip())[1])
            k -= 1
        text = "\n".join(line[indent:] for line in lines[i + 1 : end]) + "\n"
        found.append(Block(page, i + 1, match[2], text, comments))
        i = end + 1
    return found


def bash_blocks(page: Path) -> list[Block]:
    return [b for b in blocks(page) if b.lang == "bash"]


def commands(script: str) -> list[list[str]]:
    """The commands of a script as word lists: continuation lines joined, heredoc bodies and comments left out,
    split at `;`, `&&`, `||`, `|` and `&` outside quotes; redirections and variable assignments dropped."""
    out, lines, heredoc = [], iter(script.splitlines()), None
    for line in lines:
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        while line.endswith("\\"):
            line = line[:-1] + " " + next(lines, "")
        if match := HEREDOC.search(line):
            heredoc = match[1]
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        command: list[str] = []
        skip_next = False
        for token in lexer:
            if token in {";", "&&", "||", "|", "&"}:
                out.append(command)
                command = []
            elif skip_next:
                skip_next = False
            elif set(token) <= set("<>&") or re.fullmatch(r"\d[<>&]+", token):
                skip_next = True  # a redirection: the next word is its file
            elif command or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", token):
                command.append(token)
        out.append(command)
    return [c for c in out if c]


def refusal(command: list[str]) -> str | None:
    """Why the test cannot run `command`, or None when it can."""
    words = list(command)
    while words and words[0] in KEYWORDS - {"for", "export"}:
        words.pop(0)
    if not words or words[0] in ("for", "export"):  # a loop's head, variable assignments
        return None
    if words[0] not in ALLOWED:
        return f"`{words[0]}` is not one of the programs this test runs ({', '.join(sorted(ALLOWED))})"
    if words[0] == "python" and "pytest" in words[1:3]:
        files = [w for w in words if w.startswith("tests/test_")]
        if not files or any("test_docs_commands" in w for w in files):
            return "pytest may run only named test files, never the whole suite or this file"
    return None


def runnable(block: Block) -> bool:
    return block.directive("not run") is None and not any(refusal(c) for c in commands(block.text))


# ---------------------------------------------------------------- static checks (fast) ----------------------------
def test_a_block_that_is_not_run_says_why():
    for page in PAGES:
        for block in bash_blocks(page):
            reason = block.directive("not run")
            assert reason is None or len(reason.split()) >= 3, f"{block.where}: say why it is not run"


def test_every_shown_command_is_one_this_test_can_run_or_is_marked():
    problems = [
        f"{block.where}: {why}; mark the block <!-- not run: why --> if it cannot run in a fresh checkout"
        for page in PAGES
        for block in bash_blocks(page)
        if block.directive("not run") is None
        for why in filter(None, map(refusal, commands(block.text)))
    ]
    assert not problems, "\n".join(problems)


def test_the_command_scanner_sees_quotes_heredocs_continuations_and_refuses_the_rest():
    script = (
        "HF_HUB_OFFLINE=1 snakemake --cores 2 all \\\n    --configfile config/paper.yaml 2>&1 | tail -3\n"
        "# a comment\n"
        'python -c "import a; print(1)" && for f in x/*; do ln -sf "$f" y/; done\n'
        "cat > notes.txt <<'EOF'\npip install nothing\nEOF\n"
        "pip install x || python -m pytest -q\n"
    )
    found = commands(script)
    assert found[:2] == [["snakemake", "--cores", "2", "all", "--configfile", "config/paper.yaml", "2"], ["tail", "-3"]]
    assert ["python", "-c", "import a; print(1)"] in found and ["cat"] in found  # quotes and heredocs kept whole
    assert [c[0] for c in found if refusal(c)] == ["pip", "python"]  # pip, and pytest over the whole suite
    assert refusal(["python", "-m", "pytest", "tests/test_methods.py"]) is None


def test_license_and_citation_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == {"text": "MIT"}
    license_text = (ROOT / "LICENSE").read_text()
    assert license_text.startswith("MIT License\n") and "Copyright (c) 2026 the ant authors" in license_text
    citation = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    assert (citation["cff-version"], citation["license"], citation["version"]) == ("1.2.0", "MIT", project["version"])
    paper = citation["preferred-citation"]
    assert [a["family-names"] for a in paper["authors"]] == ["Peng", "Parthasarathy", "Ning"]
    assert paper["year"] == 2023 and "arXiv:2309.10195" in [i["value"] for i in paper["identifiers"]]
    assert paper["title"].startswith("Multi-modality Meets Re-learning")


def test_the_recbole_recipe_is_the_crosschecked_configuration():
    """docs/add-a-method.md's RecBole config = benchmarks/recbole_crosscheck.py's on the keys that decide the data
    and the evaluation (that script measured RecBole and ours agreeing under it)."""
    (block,) = [b for b in bash_blocks(ROOT / "docs/add-a-method.md") if "recbole.yaml" in b.text]
    ours = yaml.safe_load(block.text.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0])
    spec = importlib.util.spec_from_file_location("recbole_crosscheck", ROOT / "benchmarks/recbole_crosscheck.py")
    crosscheck = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(crosscheck)
    shared = crosscheck.shared(SimpleNamespace(hidden_size=64, lr=1e-3, batch_size=2048, epochs=300, threads=2))
    data = Path(ours["data_path"]) / "DemoScientific"  # the export's folder: results/recbole/<task>
    theirs = crosscheck.recbole_config("sasrec", shared, data, 0, Path("out"), None)
    keys = ["data_path", "benchmark_filename", "alias_of_item_id", "load_col", "USER_ID_FIELD", "ITEM_ID_FIELD"]
    keys += ["MAX_ITEM_LIST_LENGTH", "train_neg_sample_args", "loss_type", "topk", "metrics", "valid_metric"]
    keys += ["eval_step", "stopping_step"]
    assert {k: ours[k] for k in keys} == {k: theirs[k] for k in keys}


# ---------------------------------------------------------------- running the pages ------------------------------
@dataclass
class Outcome:
    block: Block
    returncode: int  # the block's script, or the first of its dry runs that failed
    output: str  # what that printed


def apply(block: Block, work: Path) -> None:
    """Write one `<!-- apply: ... -->` code block into the copy, as docs/add-a-method.md tells a reader to."""
    how = block.directive("apply")
    if how.startswith("create "):
        (work / how.removeprefix("create ")).write_text(block.text)
    elif match := re.fullmatch(r"insert into (\S+) after the line: (.+)", how):
        path = work / match[1]
        lines = path.read_text().splitlines(keepends=True)
        (at,) = [i for i, line in enumerate(lines) if line.strip().startswith(match[2].strip())]
        path.write_text("".join(lines[: at + 1]) + block.text + "".join(lines[at + 1 :]))
    elif match := re.fullmatch(r"merge into (\S+) under: (\S+)", how):
        path = work / match[1]
        document = yaml.safe_load(path.read_text())
        node = document
        for key in match[2].split("."):
            node = node[key]
        node.update(yaml.safe_load(block.text))
        path.write_text(yaml.safe_dump(document, sort_keys=False))
    else:
        raise AssertionError(f"{block.where}: unknown apply directive {how!r}")


def workdir(page: Path, root: Path) -> Path:
    """A fresh copy of the project for one page; with the package and the tests where the page changes them."""
    work = make_workdir(root)
    if any(b.directive("apply") for b in blocks(page)):
        ignore = shutil.ignore_patterns("__pycache__")
        for name in ("ant", "tests"):
            shutil.copytree(ROOT / name, work / name, ignore=ignore)
        shutil.copy(ROOT / "pyproject.toml", work)
    return work


def environment() -> dict[str, str]:
    """Offline, unbuffered, and `python` the interpreter running the tests."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    return {**os.environ, **offline, "PATH": path}


def run_page(page: Path, root: Path, dry_pool: ThreadPoolExecutor) -> list[Outcome]:
    """The page's runnable blocks in order in one copy (later blocks read what earlier ones wrote; the first
    failure stops the page), then the `snakemake` calls they recorded, as dry runs in the shared pool; a failed
    dry run fails the block that made the call."""
    work, calls = workdir(page, root), root / "calls"
    calls.mkdir()
    for block in blocks(page):
        if block.directive("apply"):
            apply(block, work)
    outcomes = {}
    for block in filter(runnable, bash_blocks(page)):
        setup = block.directive("test setup") or ""
        env = environment() | {"ANT_DOCS_CALLS": str(calls), "ANT_DOCS_BLOCK": block.where}
        script = PREAMBLE + setup + "\n" + block.text
        done = subprocess.run(
            ["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=PAGE_TIMEOUT_S
        )
        outcomes[block.where] = Outcome(block, done.returncode, done.stdout + done.stderr)
        if done.returncode:
            break
    recorded = sorted(calls.iterdir())
    chunks = [recorded[i : i + DRY_RUNS_PER_PROCESS] for i in range(0, len(recorded), DRY_RUNS_PER_PROCESS)]
    for results in dry_pool.map(lambda chunk: dry_runs(chunk, work), chunks):
        for where, returncode, output in results:
            if returncode:
                outcomes[where].returncode, outcomes[where].output = returncode, output
    return list(outcomes.values())


def dry_runs(recorded: list[Path], work: Path) -> list[tuple[str, int, str]]:
    """Recorded calls as `snakemake -n ...`, several in one interpreter (Snakemake's import is most of a dry run's
    time; its state does not carry from one call to the next); (block, exit status, output) per call."""
    done = subprocess.run(
        [sys.executable, "-c", DRY_RUNNER, *map(str, recorded)],
        cwd=work,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=PAGE_TIMEOUT_S,
    )
    results = []
    for call, part in zip(recorded, done.stdout.split("\0CALL\n")[1:], strict=True):
        where, _, *args = call.read_bytes().decode().split("\0")[:-1]
        output, _, status = part.rpartition("\0EXIT ")
        results.append((where, int(status.strip()), f"snakemake -n {' '.join(args)}\n{output}"))
    assert len(results) == len(recorded), done.stdout[-3000:]
    return results


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> dict[Path, list[Outcome]]:
    """Every page run, each page's dry runs starting as soon as its blocks are done."""
    roots = {page: tmp_path_factory.mktemp(page.stem) for page in PAGES}
    with ThreadPoolExecutor(max_workers=8) as dry_pool, ThreadPoolExecutor(max_workers=len(PAGES)) as pages:
        return dict(zip(PAGES, pages.map(lambda p: run_page(p, roots[p], dry_pool), PAGES), strict=True))


@pytest.mark.slow
@pytest.mark.workflow
@pytest.mark.parametrize("page", [p for p in PAGES if bash_blocks(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_every_command_of_the_page_runs(page, ran):
    failed = [o for o in ran[page] if o.returncode]
    assert not failed, "\n\n".join(f"{o.block.where} (exit {o.returncode}):\n{o.output[-3000:]}" for o in failed)
    assert len(ran[page]) == len([b for b in bash_blocks(page) if runnable(b)])  # none skipped by a failure


@pytest.mark.slow
def test_the_model_prefetch_recipe_writes_folders_the_encoders_load(tmp_path):
    """docs/running.md's not-run prefetch, with the demo's tiny models in place of the hub's: the folders it
    writes hold what the encoders load (tokenizer or image processor, config, weights)."""
    import torch

    from ant.cli import main
    from ant.features.encoders import load_image_encoder, load_text_encoder

    (block,) = [b for b in bash_blocks(ROOT / "docs/running.md") if "save_pretrained" in b.text]
    script = block.text.split("<<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    assert main(["tiny-models", "--bert", str(tmp_path / "tb"), "--swin", str(tmp_path / "ts")]) == 0
    for hub, tiny in [("bert-base-uncased", "tb"), ("microsoft/swin-base-patch4-window7-224", "ts")]:
        assert f'("{hub}",' in script
        script = script.replace(f'("{hub}",', f'("{tmp_path / tiny}",')
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    tokenizer, _ = load_text_encoder(str(tmp_path / "models/bert-base-uncased"), None, torch.device("cpu"))
    processor, _ = load_image_encoder(str(tmp_path / "models/swin-base-patch4-window7-224"), None, torch.device("cpu"))
    assert tokenizer("a steel bottle")["input_ids"] and processor is not None
