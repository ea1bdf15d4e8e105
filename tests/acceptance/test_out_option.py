"""One meaning for `-o` across commands (the output format): the files of `audit export` and
`audit receipt` are `--out FILE` / `-O FILE`; their old `-o FILE` still works, with a warning."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import LONG_AGO, cli, seed, write_config


def test_export_out_and_the_deprecated_o(workdir: Path) -> None:
    """`--out` and `-O` write the file quietly; `-o json` still writes a file named json (as
    it always did) and warns once naming --out; both at once is a usage error."""
    write_config(workdir, "http://127.0.0.1:9/v1")
    assert cli("record", "resp_1", cwd=workdir).returncode == 0
    for flag, name in (("--out", "a.jsonl"), ("-O", "b.jsonl")):
        result = cli("audit", "export", flag, name, cwd=workdir)
        assert result.returncode == 0 and "deprecated" not in result.stderr, result.stderr
        assert (workdir / name).exists() and (workdir / f"{name}.manifest.json").exists()
    old = cli("audit", "export", "-o", "json", cwd=workdir)
    assert old.returncode == 0, old.stderr
    warnings = [line for line in old.stderr.splitlines() if "deprecated" in line]
    assert len(warnings) == 1 and "--out FILE" in warnings[0]
    assert (workdir / "json").exists()
    both = cli("audit", "export", "-o", "x", "--out", "y", cwd=workdir)
    assert both.returncode == 2 and "--out FILE only" in both.stderr
    nowhere = cli("audit", "export", "--out", str(workdir / "no" / "such.jsonl"), cwd=workdir)
    assert nowhere.returncode == 2 and "Traceback" not in nowhere.stderr
    assert (
        nowhere.stderr.strip()
        .splitlines()[-1]
        .endswith("such.jsonl: cannot write: No such file or directory")
    )
    shown = " ".join(cli("audit", "export", "--help", cwd=workdir).stdout.split())
    assert "-O, --out" in shown and "-o FILE still works, deprecated" in shown


def test_receipt_out_and_the_deprecated_o(workdir: Path, standin_process: str) -> None:
    """`audit receipt ID --out FILE` writes the receipt; `-o FILE` too, with the warning."""
    write_config(workdir, standin_process)
    seed(standin_process, [{"id": "resp_o1"}])
    assert cli("record", "resp_o1", "--created-at", LONG_AGO, cwd=workdir).returncode == 0
    assert cli("sweep", cwd=workdir).returncode == 0
    new = cli("audit", "receipt", "resp_o1", "--out", "r1.json", cwd=workdir)
    assert new.returncode == 0 and "deprecated" not in new.stderr, new.stderr
    old = cli("audit", "receipt", "resp_o1", "-o", "r2.json", cwd=workdir)
    assert old.returncode == 0 and "use --out FILE" in old.stderr, old.stderr
    assert (workdir / "r1.json").read_text() and (workdir / "r2.json").read_text()
