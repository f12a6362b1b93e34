"""Packaging: the public names, the extras and their errors, the source-checkout layout.

The core install lacks the extras' packages; these tests take one away by putting ``None``
in ``sys.modules`` under its names, which makes Python's own import fail exactly as for an
absent package (``ModuleNotFoundError``).
"""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path

import pytest

import agentmem
from agentmem import errors
from agentmem.cli import main
from agentmem.errors import AgentMemError, MissingExtraError
from agentmem.extras import EXTRAS, require_extra
from tests.conftest import ROOT

# Every top-level module of the extras' packages that the layers import.
EXTRA_MODULES = ("fastapi", "starlette", "uvicorn", "langchain_core", "langchain", "matplotlib")


def _uninstall(monkeypatch, package: str) -> None:
    """Makes ``package`` unimportable until the test ends, its submodules already imported
    by other tests included (``import a.b`` finds ``a.b`` in sys.modules without ``a``)."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")] + [package]:
        monkeypatch.setitem(sys.modules, name, None)


def test_every_public_name_resolves():
    assert len(agentmem.__all__) == len(set(agentmem.__all__))
    for name in agentmem.__all__:
        assert getattr(agentmem, name) is not None, name
    assert set(agentmem.__all__) <= set(dir(agentmem))
    # the names come from where they are defined
    assert agentmem.Plan is importlib.import_module("agentmem.tools.calls").Plan
    assert agentmem.TrainConfig is importlib.import_module("agentmem.training").TrainConfig
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        agentmem.Nope  # noqa: B018


def test_every_error_class_is_exported():
    defined = {
        name
        for name, value in vars(errors).items()
        if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == errors.__name__
    }
    assert {"BankFormatWarning", "PromptTooLongError", "MissingExtraError"} <= defined
    assert defined <= set(agentmem.__all__)


def test_extras_match_pyproject():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    optional = project["project"]["optional-dependencies"]
    assert set(EXTRAS) <= set(optional)
    core = " ".join(project["project"]["dependencies"])
    for extra in EXTRAS:
        for requirement in optional[extra]:
            distribution = requirement.split(">")[0].split("=")[0].split("[")[0]
            assert distribution not in core, f"{distribution} of [{extra}] is also a core dependency"
    assert "py.typed" in project["tool"]["setuptools"]["package-data"]["agentmem"]
    assert (ROOT / "agentmem" / "py.typed").is_file()


@pytest.mark.parametrize(
    ("module", "missing", "extra", "what"),
    [
        ("agentmem.adapters.server", "fastapi", "server", "agentmem's server"),
        ("agentmem.adapters.langchain", "langchain_core", "langchain", "agentmem's LangChain adapter"),
        ("agentmem.adapters.bench_server", "uvicorn", "server", "agentmem's server"),
    ],
)
def test_a_missing_extra_names_the_pip_install(monkeypatch, module, missing, extra, what):
    _uninstall(monkeypatch, missing)
    monkeypatch.delitem(sys.modules, module, raising=False)  # imported afresh; restored after
    with pytest.raises(ImportError) as caught:
        importlib.import_module(module)
    message = str(caught.value)
    assert message.startswith(f"{what} needs the [{extra}] extra: pip install 'agentmem[{extra}]'")
    assert missing in message  # and which module was not found
    assert isinstance(caught.value, MissingExtraError) and isinstance(caught.value, AgentMemError)
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)


def test_the_evaluation_plot_names_the_eval_extra(monkeypatch, tmp_path):
    from agentmem.eval import report

    _uninstall(monkeypatch, "matplotlib")
    with pytest.raises(MissingExtraError, match=r"evaluation needs the \[eval\] extra: pip install 'agentmem\[eval\]'"):
        report.plot({"methods": {}}, tmp_path)
    with pytest.raises(MissingExtraError, match="matplotlib"):
        require_extra("eval")


@pytest.mark.parametrize(
    ("argv", "missing", "extra"),
    [
        (["serve", "{tmp}"], "fastapi", "server"),
        (["serve", "{tmp}"], "uvicorn", "server"),
        (["eval", "--out", "{tmp}"], "matplotlib", "eval"),
    ],
)
def test_commands_of_a_missing_extra_print_it_and_exit_2(monkeypatch, capsys, tmp_path, argv, missing, extra):
    _uninstall(monkeypatch, missing)
    assert main([a.format(tmp=tmp_path) for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"agentmem {argv[0]}: error: " in err
    assert f"needs the [{extra}] extra: pip install 'agentmem[{extra}]'" in err


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_the_core_imports_no_extra_nor_torch(tmp_path):
    # A fresh interpreter: in this one the extras are long imported.
    code = f"""
import sys
import agentmem, agentmem.cli, agentmem.tools, agentmem.extras
agentmem.ToolSpec, agentmem.Plan, agentmem.SkippedExample, agentmem.BankError
try:
    agentmem.cli.main(["--help"])  # builds every subparser, the entry points' (eval) too
except SystemExit as exit:
    assert exit.code == 0, exit.code
loaded = sorted(m for m in sys.modules if m.split(".")[0] in {EXTRA_MODULES + ("torch", "transformers")!r})
assert not loaded, loaded
"""
    result = _python(code, tmp_path)
    assert result.returncode == 0, result.stderr


def test_a_source_checkout_finds_its_mapped_subpackages():
    # Python run from the repository root imports the folder agentmem/, which holds no
    # tools/, adapters/ or eval/ (pyproject maps them from the root), even when a
    # non-editable install sits in site-packages. This venv's editable install would find
    # them by its own import hook: drop the hook to see what agentmem/__init__ does alone.
    code = """
import sys
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in getattr(f, "__module__", "").lower()]
sys.path_hooks[:] = [h for h in sys.path_hooks if "editable" not in getattr(h, "__module__", "").lower()]
sys.path_importer_cache.clear()
import agentmem, agentmem.tools, agentmem.adapters, agentmem.eval.metrics
from agentmem.tools import ToolSpec
print(agentmem.__file__, agentmem.tools.__file__, agentmem.eval.__file__, sep="\\n")
"""
    result = _python(code, ROOT)
    assert result.returncode == 0, result.stderr
    files = [Path(line) for line in result.stdout.splitlines()]
    assert files == [ROOT / "agentmem" / "__init__.py", ROOT / "tools" / "__init__.py", ROOT / "eval" / "__init__.py"]


def test_every_package_folder_is_listed_for_the_wheel():
    # pyproject names its packages one by one (four folders mapped into one package): a new
    # subpackage left off the list would be missing from an installed agentmem.
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    found = set()
    for package, folder in setuptools["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            found.add(".".join([package, *init.parent.relative_to(ROOT / folder).parts]))
    assert {"agentmem.adaptation", "agentmem.adapters.server"} <= found
    # a folder of data only (the shipped adaptations) is a package too, listed with its data
    data_only = set(setuptools["package-data"]) - found
    assert data_only == {"agentmem.adaptations"}
    assert set(setuptools["packages"]) == found | data_only
