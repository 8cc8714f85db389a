"""`fastnn compile`'s lists (--kinds, --dtypes, --hidden-layers) name configurations: one named twice is one
configuration, compiled and reported once (fastnn.precompile.units)."""
from fastnn import precompile


def test_a_configuration_named_twice_is_compiled_once():
    assert precompile.units(("sgd", "adam", "sgd"), ("float64", "float64"), (1, 2, 1)) == [
        ("sgd", "float64", 1), ("sgd", "float64", 2), ("adam", "float64", 1), ("adam", "float64", 2)]


def test_the_command_counts_each_configuration_once(capsys, monkeypatch):
    from fastnn.cli import main
    ran = []
    monkeypatch.setattr(precompile, "compile_units", lambda todo, jobs, report=None: ran.append(todo) or [])
    assert main(["compile", "--kinds", "sgd,sgd", "--dtypes", "float32,float32", "--hidden-layers", "1,1"]) == 0
    assert ran == [[("sgd", "float32", 1)]]
    assert "1 configuration in 1 process" in capsys.readouterr().out
