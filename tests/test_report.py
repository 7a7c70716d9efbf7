"""report.py: the page of a run, what is inside it, the `report` command, and the page in a browser."""
import base64
import io
import re
import wave
from html.parser import HTMLParser

import numpy as np
import pytest

from lstm_from_scratch import cli, report
from lstm_from_scratch.music.corpus import builtin_sequences

from browser import Chromium, find_chromium
from cli_support import TINY, one_error_line, write_tunes

SECTIONS = {"glance": "1. The run at a glance", "curves": "2. Learning curves", "listen": "3. Listen and look",
            "corpus": "4. Does it sound like the corpus?", "inside": "5. Inside the net"}


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """A tiny demo run on the built-in tunes, with the report.html the demo wrote."""
    run = tmp_path_factory.mktemp("demo") / "run"
    assert cli.main(["demo", "--tiny", "--out", str(run)]) == 0
    return run


class Page(HTMLParser):
    """The parts of a page the tests look at: sections, images, audio, links, scripts."""

    def __init__(self, text):
        super().__init__()
        self.sections, self.images, self.audio, self.links, self.scripts = [], [], [], [], 0
        self.feed(text)

    def handle_starttag(self, tag, attributes):
        attributes = dict(attributes)
        if tag == "section":
            self.sections.append(attributes.get("id"))
        elif tag == "img":
            self.images.append(attributes["src"])
        elif tag == "audio":
            self.audio.append(attributes["src"])
        elif tag == "script":
            self.scripts += 1
        for name in ("href", "src"):
            if name in attributes:
                self.links.append(attributes[name])


def data(address, kind):
    prefix = f"data:{kind};base64,"
    assert address.startswith(prefix), address[:60]
    return base64.b64decode(address[len(prefix):])


def test_the_page_holds_everything_and_needs_no_network(demo_run):
    text = (demo_run / "report.html").read_text(encoding="utf-8")
    page = Page(text)
    assert page.sections == list(SECTIONS)
    assert page.scripts == 0
    # Every address is inside the page or a link to a place in it: nothing to fetch.
    assert all(link.startswith(("data:", "#")) for link in page.links), [link[:40] for link in page.links]
    assert "http://" not in text and "https://" not in text
    assert len(page.images) >= 10
    for address in page.images:
        assert data(address, "image/png")[:8] == b"\x89PNG\r\n\x1a\n"
    # Three temperatures, a primed piece and a training piece, each a WAV of some seconds.
    assert len(page.audio) == len(report.TEMPERATURES) + 2
    for address in page.audio:
        with wave.open(io.BytesIO(data(address, "audio/wav"))) as wav:
            assert wav.getframerate() == report.SAMPLE_RATE
            seconds = wav.getnframes() / wav.getframerate()
            assert 1 < seconds <= report.MAX_AUDIO_SECONDS + 1
    for words in ("unigram baseline", "parameters", "Temperature 0.5", "Temperature 1.5", "Primed with",
                  "A training piece", "in scale", "in repeated loops", "forget gate",
                  "Which earlier chunks drove this prediction?"):
        assert words in text, words
    assert "$" not in re.sub(r"<[^>]*>", "", text.split("<main>")[1])  # no template field left


def test_the_report_command_rebuilds_the_same_page(demo_run, capsys):
    page = demo_run / "report.html"
    before = page.read_bytes()
    page.unlink()
    assert cli.main(["report", str(demo_run)]) == 0  # DATA defaults to the built-in tunes
    assert page.read_bytes() == before  # the same run gives the same page, byte for byte
    assert capsys.readouterr().out.strip().splitlines()[-1].endswith(f"open {page} in a browser")


def test_train_writes_the_page_and_report_needs_its_data(tmp_path, capsys):
    tunes = tmp_path / "tunes"
    tunes.mkdir()
    write_tunes(tunes)
    run = tmp_path / "run"
    assert cli.main(["train", str(tunes), *TINY, "--epochs", "1", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert (run / "report.html").stat().st_size > 100_000
    assert f"open {run / 'report.html'} in a browser" in out
    assert "report.html" in out.splitlines()[-3]  # "wrote RUN_DIR/report.html, loss.png, ..."
    (run / "report.html").unlink()
    # Without DATA the report tries the built-in tunes, which this run never saw: it says what to give.
    assert cli.main(["report", str(run)]) == 1
    line = one_error_line(capsys)
    assert "not the ones" in line and f"lstm-music report {run} DATA" in line
    assert not (run / "report.html").exists()
    assert cli.main(["report", str(run), str(tunes)]) == 0
    assert (run / "report.html").exists()
    capsys.readouterr()
    assert cli.main(["report", str(run / "last.npz")]) == 2
    assert "run folder" in one_error_line(capsys)
    assert cli.main(["report", str(tmp_path / "nothing here")]) == 1
    assert "nothing here" in one_error_line(capsys)


def test_pieces_of_other_data_are_refused(demo_run):
    pieces = builtin_sequences()
    with pytest.raises(report.ReportError, match="not the ones"):
        report.write_report(demo_run, pieces[:-1])  # one piece fewer: another split, other counts


def test_the_explained_step_needs_memory():
    on, off = (lambda p: (0, True, p, 80)), (lambda p: (2, False, p, 0))
    # Chunk 1 starts 67 and chunk 6 ends it; chunks 2..5 start and end 60 and 64 meanwhile.
    events = [on(60), on(67), off(60), on(64), off(64), on(60), off(67), off(60)]
    sure = np.full(7, 0.5)
    # After chunk 5 the next chunk ends 67, struck 5 chunks before: the longest memory.
    assert report.chosen_step(events, sure, steps=(0, 7)) == 5
    unsure = sure.copy()
    unsure[5] = 0.01  # ... but the net did not see it coming: the next longest that it did see,
    unsure[6] = 0.6  # 2 chunks (after chunks 1 and 6); of those two, the likelier
    assert report.chosen_step(events, unsure, steps=(0, 7)) == 6
    # No note ends in range: the likeliest prediction.
    assert report.chosen_step([on(60), on(62), on(64), on(65)], np.array([0.1, 0.7, 0.2]), steps=(0, 3)) == 1


def test_the_demo_page_in_a_real_browser(demo_run, tmp_path_factory):
    """Open the page as a student would: nothing fails, every picture and sound loads.

    Saves screenshots (a laptop's 1280 x 800 and a projector's 1024 x 768, the whole page) and
    prints their paths, which pytest's summary shows under "report screenshots".
    """
    if find_chromium() is None:
        pytest.skip("no chromium on PATH (Debian: apt-get install chromium)")
    shots = tmp_path_factory.mktemp("report-screenshots")
    page = (demo_run / "report.html").resolve().as_uri()
    for width, height in ((1280, 800), (1024, 768)):
        with Chromium() as browser:
            browser.open(page, width=width, height=height)
            assert browser.evaluate("document.readyState") == "complete"
            images = browser.evaluate("[...document.images].map(i => [i.complete, i.naturalWidth])")
            assert len(images) >= 10 and all(done and size > 0 for done, size in images), images
            durations = browser.evaluate(
                "Promise.all([...document.querySelectorAll('audio')].map(a => a.readyState >= 1 ? a.duration"
                " : new Promise(done => { a.onloadedmetadata = () => done(a.duration);"
                " a.onerror = () => done(-1); setTimeout(() => done(0), 20000); })))")
            assert len(durations) == len(report.TEMPERATURES) + 2
            assert all(duration > 0 for duration in durations), durations
            headings = browser.evaluate("[...document.querySelectorAll('section > h2')].map(h => h.textContent)")
            assert headings == list(SECTIONS.values())
            # Nothing wider than the window: no sideways scrolling on a projector.
            assert browser.evaluate("document.documentElement.scrollWidth") <= width
            assert browser.problems() == []
            path = browser.screenshot(shots / f"report-{width}x{height}.png")
            print(f"report screenshot: {path}")
            assert path.stat().st_size > 50_000


def test_the_engine_is_shown_when_the_run_names_it(demo_run):
    # Runs say which engine trained them in their checkpoint and history records; runs from before the
    # engines were split do not, and then the page leaves the row out.
    assert report._engine({"engine": {"name": "fast", "processes": 2}, "history": []}) == "fast, 2 processes"
    assert report._engine({"history": [{"epoch": 1, "engine": "plain", "processes": 1}],
                           "engine": {"name": "fast", "processes": 1}}) == "plain then fast"
    assert report._engine({"train_config": {}, "history": []}) is None
    assert "<th>engine</th>" in (demo_run / "report.html").read_text(encoding="utf-8")


def test_a_page_for_an_embedding_model_that_predicts_the_last_step_only(tmp_path):
    # The other paths through the page: an embedding's output as the input gradient, two LSTMs,
    # logits at the last step only (one pass per prediction), and no validation pieces.
    from lstm_from_scratch import train
    from lstm_from_scratch.music.events import EventSettings

    pieces = builtin_sequences()[:3]
    config = train.TrainConfig(epochs=1, batch_size=16, seq_len=8, step=16, val_fraction=0.0)
    dataset = train.prepare_data(pieces, EventSettings(), config)
    model = {"input": "embedding", "embedding_dim": 6, "output": "last",
             "layers": [{"type": "lstm", "hidden_size": 8}, {"type": "lstm", "hidden_size": 8}]}
    train.train(dataset, model, config, tmp_path, progress=False)
    text = report.write_report(tmp_path, pieces).read_text(encoding="utf-8")
    assert Page(text).sections == list(SECTIONS)
    assert "Primed with" not in text  # no validation piece to prime with
    assert "a training piece (there are no validation pieces)" in text
    assert "embedding 6 &rarr; LSTM 8 &rarr; LSTM 8" in text and "only the chunk after each window" in text


def test_the_statistics_table_marks_what_no_training_piece_reaches():
    corpus = [{key: 1.0 for key in report.stats.STATISTICS}, {key: 2.0 for key in report.stats.STATISTICS}]
    piece = report.Piece("Temperature 9", "T 9", "", ["0_no_60_80", "1_nf_60_0"], 4)
    measured = {"T 9": {**{key: 1.5 for key in report.stats.STATISTICS}, "polyphony": 2.5,
                        "pitch_range": 1.0 - 1e-12, "loop_share": float("nan")}}
    table = report._statistics_table([piece], measured, corpus)
    row = table.split("<tr><td>Temperature 9</td>")[1].split("</tr>")[0]
    assert row.count('class="outside"') == 1 and '<td class="outside">2.50</td>' in row
    assert "<td>&ndash;</td>" in row  # NaN: not defined for this piece
    assert "training pieces, range" in table
