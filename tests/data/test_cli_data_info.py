"""`nolb data info`: the printed profile, the plot, and one-line errors."""

import pytest

from nolb.cli import main
from nolb.data.profiles import long_tailed_counts


def test_info_prints_the_profile_and_plots(tmp_path, capsys):
    plot = tmp_path / "digits.png"
    assert main(["data", "info", "digits_lt", "--imbalance-ratio", "10", "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    counts = long_tailed_counts(100, 10, 10)
    few = sum(1 for n in counts if n < 20)
    assert f"train {sum(counts)}, val 200, test 500" in out
    assert f"max / min        {max(counts)} / {min(counts)}" in out and "imbalance ratio  10.00" in out
    assert f"0 / {10 - few} / {few}" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["data", "info", "digits_lt", "--plot", str(plot)]) == 2  # never overwrites unasked
    assert "already exists" in capsys.readouterr().err


def test_info_on_places_lists(shared_data, tmp_path, capsys):
    lists = shared_data / "splits"
    if not (lists / "Places_LT_train.txt").is_file():
        pytest.skip("Places-LT lists not found")
    assert main(["data", "info", "places_lt", "--root", str(tmp_path), "--lists-dir", str(lists)]) == 0
    out = capsys.readouterr().out
    assert "classes          365" in out and "max / min        4980 / 5" in out and "train 62500" in out


@pytest.mark.parametrize("argv,message", [
    (["data", "info", "mnist_lt"], "unknown dataset 'mnist_lt'"),
    (["data", "info", "digits_lt", "--root", "/x"], "data.root: unknown option for digits_lt"),
    (["data", "info", "digits_lt", "--option", "n_max=500"], "n_max: must be in 1..104"),
])
def test_bad_input_is_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.startswith("nolb: error:") and "\n" not in err
