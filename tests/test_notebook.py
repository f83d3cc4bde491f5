"""monodepth2.ipynb: kept without outputs, and run top to bottom by a real Jupyter kernel in
its default budget (synthetic drive, tiny training), its pictures drawn."""
import os

import nbformat
import pytest
from nbclient import NotebookClient

from scene_files import read_ply

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "monodepth2.ipynb")
WORK_LINE = 'WORK = "notebook_run"'


def read():
    return nbformat.read(NOTEBOOK, as_version=4)


def test_repository_copy_holds_no_outputs():
    nb = read()
    nbformat.validate(nb)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert code
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


def test_notebook_runs_and_draws_its_pictures(tmp_path):
    nb = read()
    # the notebook's working folder moved into the test's, so a user's notebook_run/ is left alone
    [data_cell] = [cell for cell in nb.cells if WORK_LINE in cell.source]
    data_cell.source = data_cell.source.replace(WORK_LINE, "WORK = {!r}".format(str(tmp_path / "work")))
    client = NotebookClient(nb, timeout=1800, kernel_name="python3", resources={"metadata": {"path": ROOT}})
    try:
        client.execute()  # a failing cell (or `!` command: the setup cell makes them raise) raises
    finally:
        nbformat.write(nb, str(tmp_path / "executed.ipynb"))

    pictures = [cell for cell in nb.cells if "picture" in cell.metadata.get("tags", [])]
    assert len(pictures) == 4
    for cell in pictures:
        images = [out for out in cell.outputs if "image/png" in out.get("data", {})]
        assert images, cell.source[:60]
        assert len(images[0]["data"]["image/png"]) > 10000  # base64 PNG of a drawn figure
    tables = [out["data"]["text/markdown"] for cell in nb.cells for out in cell.get("outputs", [])
              if "text/markdown" in out.get("data", {})]
    assert any("--eval_stereo" in t and "--eval_mono" in t and "abs_rel" in t for t in tables)
    assert any("eager Paddle" in t for t in tables)
    for name in ("tiny_64x192", "tiny_96x320"):
        assert os.path.isfile(tmp_path / "work" / "logs" / name / "models" / "best" / "depth.pdparams")
    assert sorted(os.listdir(tmp_path / "work" / "demo")) == sorted(
        "{}_disp.{}".format(i, ext) for i in range(4) for ext in ("jpeg", "npy"))
    points, colours, comments = read_ply(str(tmp_path / "work" / "demo_3d" / "0.ply"))
    assert len(points) > 1000 and colours is not None and "metres" in " ".join(comments)


def test_setup_installs_only_what_is_missing_and_stops_on_failing_commands(tmp_path):
    """The setup cell finds the requirements that are not installed (none here, so CI installs
    nothing from the notebook), and turns a failing `!command` into an error (IPython alone
    would go on)."""
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# a comment\npaddlepaddle-gpu==3.3.1  # looked for as paddle\nnumpy==2.4.6\n"
                            "no-such-package-i23==1.0\n\nPillow>=1  # any version\n")
    nb = read()
    setup = nb.cells[[cell.cell_type for cell in nb.cells].index("code")]
    nb.cells = [setup,
                nbformat.v4.new_code_cell("print(not_installed(), not_installed({!r}))".format(str(requirements))),
                nbformat.v4.new_code_cell("!python -c 'import sys; sys.exit(3)'\nprint('went on')")]
    client = NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": ROOT}})
    with pytest.raises(Exception, match="exit code 3"):
        client.execute()
    assert "pip install" not in str(nb.cells[0].outputs)  # everything was there: no install ran
    assert nb.cells[1].outputs[0]["text"] == "[] ['no-such-package-i23']\n"
    assert [out.output_type for out in nb.cells[2].outputs] == ["error"]  # nothing printed after it
