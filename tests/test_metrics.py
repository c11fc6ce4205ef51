"""Host-side metrics: the progress display of a run whose output is not a terminal."""
from wsrl_mjx.metrics import progress_bar


def test_progress_prints_plain_lines_when_not_on_a_terminal(capsys, monkeypatch):
    # Under pytest's capture the output is not a terminal, as for `nohup python -m wsrl_mjx.train > log`
    # (unless the environment tells rich otherwise).
    for name in ('FORCE_COLOR', 'TTY_COMPATIBLE', 'JUPYTER_COLUMNS'):
        monkeypatch.delenv(name, raising=False)
    with progress_bar() as bar:
        task = bar.add_task('default pretrain cql x5', total=100, speed='', score='')
        bar.update(task, completed=20, speed='50.0 updates/s')   # first count: a line
        bar.update(task, completed=40, speed='51.0 updates/s')   # within 30 s of it: none
        bar.update(task, score='score 12.3')                      # a new score: a line
        bar.update(task, score='score 12.3')                      # the same score: none
    lines = [line for line in capsys.readouterr().out.splitlines() if 'elapsed' in line]
    assert len(lines) == 2, lines
    assert lines[0].startswith('default pretrain cql x5  20/100  50.0 updates/s')
    assert '40/100' in lines[1] and 'score 12.3' in lines[1]
    capsys.readouterr()
    with progress_bar(disable=True) as bar:  # --quiet
        bar.update(bar.add_task('x', total=1, speed='', score=''), completed=1)
    assert capsys.readouterr().out == ''
    with progress_bar(every=0.0) as bar:  # no minimum interval: a line whenever the count moves
        task = bar.add_task('x', total=3, speed='', score='')
        for done in (1, 2, 3):
            bar.update(task, completed=done)
        bar.update(task, speed='1 steps/s')  # no count given: none
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines() if 'elapsed' in line] == ['1/3', '2/3', '3/3']
    with progress_bar(every=0.0) as bar:  # counted by advancing (dataset collection)
        task = bar.add_task('collect', total=4, speed='', score='')
        bar.update(task, advance=2)
        bar.update(task, advance=0)  # nothing moved: none
        bar.update(task, advance=2)
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines() if 'elapsed' in line] == ['2/4', '4/4']
