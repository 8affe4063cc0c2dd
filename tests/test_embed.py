import subprocess
import sys
from pathlib import Path

TOOL = Path(__file__).resolve().parents[1] / "tools" / "embed.py"


def test_generated_section_is_replaced_from_its_file_with_links_rebased(tmp_path):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "t.md").write_text("# Title\n\n| a |\n|---|\n| 1 |\n\n![fig](fig.png)\n\n## Runs\n")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- BEGIN generated from r/t.md -->\nstale 99.9\n<!-- END generated -->\nend\n")
    out = subprocess.run([sys.executable, str(TOOL), str(readme)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    text = readme.read_text()
    assert "stale" not in text and "| 1 |" in text and "# Title" not in text
    assert "![fig](r/fig.png)" in text and text.endswith("<!-- END generated -->\nend\n")
    assert "\n### Runs\n" in text  # headings nest under the section that embeds them


def test_missing_source_is_an_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("<!-- BEGIN generated from nope.md -->\n<!-- END generated -->\n")
    out = subprocess.run([sys.executable, str(TOOL), str(readme)], capture_output=True, text=True)
    assert out.returncode != 0 and "make reproduce" in out.stderr + out.stdout


def test_another_results_folder_writes_no_readme_copy(tmp_path):
    """make reproduce RESULTS=dir: README.md is untouched, and no copy of it goes to dir (its prose would
    contradict dir's tables); a stale copy an earlier version wrote is removed; --out still fills one."""
    (tmp_path / "results" / "q").mkdir(parents=True)
    (tmp_path / "results" / "q" / "t.md").write_text("| committed |\n")
    (tmp_path / "mine" / "q").mkdir(parents=True)
    (tmp_path / "mine" / "q" / "t.md").write_text("| rerun |\n\n![fig](fig.png)\n")
    readme = tmp_path / "README.md"
    original = "<!-- BEGIN generated from results/q/t.md -->\n| committed |\n<!-- END generated -->\n"
    readme.write_text(original)
    (tmp_path / "mine" / "README.md").write_text(original)  # what an earlier version left behind

    def run(*args):
        return subprocess.run([sys.executable, str(TOOL), "README.md", *args], cwd=tmp_path, capture_output=True, text=True)
    out = run("--results", "mine")
    assert out.returncode == 0, out.stderr
    assert readme.read_text() == original and not (tmp_path / "mine" / "README.md").exists()
    assert "mine/REPORT.md" in out.stdout and "removed mine/README.md" in out.stdout
    assert run("--results", "mine", "--out", "mine/filled.md").returncode == 0
    copy = (tmp_path / "mine" / "filled.md").read_text()
    assert "| rerun |" in copy and "![fig](q/fig.png)" in copy  # links relative to the copy
    assert run("--results", "results").returncode == 0 and readme.read_text() == original  # the default: in place
