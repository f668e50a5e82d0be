"""The report and the viewer, driven in a real headless browser (Debian's chromium through selenium),
and the agreement analysis fed by ratings entered in the viewer."""

from __future__ import annotations

import json
import re
import shutil
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx
import pytest
from typer.testing import CliRunner

from speechrole.bench import load_benchmark
from speechrole.cli import app
from speechrole.judge.config import JudgeConfig, JudgeTarget
from speechrole.judge.runner import judge
from speechrole.schema import METRICS
from tests.factory import make_benchmark, make_outputs
from tests.judge_server import JudgeServer

runner = CliRunner()
INJECTED = "<script>window.__pwned = 1</script><b>bold</b>"
INJECTED_REASON = '<img src="x" onerror="window.__pwned2 = 1">'


def _judged_run(root: Path, name: str) -> Path:
    """A fixture run judged in both orders by the local server, with markup injected into an answer
    and into a judge's reason."""
    bench_root = root / "bench"
    if not bench_root.is_dir():
        make_benchmark(bench_root)
    run = make_outputs(root / "runs" / name, bench_root)
    answers = run / "model_output/single_result/json"
    first = sorted(answers.glob("*.json"))[0]
    data = json.loads(first.read_text(encoding="utf-8"))
    data["dialogue_0"][0]["model_output"]["text"] = INJECTED
    first.write_text(json.dumps(data), encoding="utf-8")
    bench = load_benchmark(bench_root)[0]
    with JudgeServer() as server:
        config = JudgeConfig(
            model="judge-x", base_url=server.base_url, protocol="swap", cache_path=root / f"{name}.sqlite"
        )
        judge(bench, JudgeTarget.for_run(run), config)
    log = run / "judgments.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines()
    first_judgment = json.loads(lines[0])
    metric = next(iter(first_judgment["scores"]))
    first_judgment["scores"][metric]["reason"] = INJECTED_REASON
    log.write_text("\n".join([json.dumps(first_judgment), *lines[1:]]) + "\n", encoding="utf-8")
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("view")
    _judged_run(root, "alpha")
    _judged_run(root, "beta")
    return root / "runs"


def _browser() -> object:
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        pytest.skip(
            "chromium and chromium-driver are not installed (Debian: apt-get install chromium chromium-driver)"
        )
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1300,1000",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver))


@pytest.fixture(scope="module")
def browser(monkeypatch_module: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch_module.setenv("SE_OFFLINE", "true")  # selenium manager must not look for drivers online
    driver = _browser()
    yield driver
    driver.quit()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def monkeypatch_module() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def _wait(driver: object, condition: object) -> None:
    """Wait for a page that a click navigates to (elements of the old page go stale meanwhile)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException)
    WebDriverWait(driver, 10, ignored_exceptions=ignored).until(condition)  # type: ignore[arg-type]


def _console_errors(driver: object) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]  # type: ignore[attr-defined]


def test_report_in_a_browser_shows_scores_charts_and_samples_and_runs_no_injected_script(
    runs: Path, browser: object, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By

    out = tmp_path / "reports" / "report.html"
    result = runner.invoke(app, ["report", str(runs / "alpha"), str(runs / "beta"), "-o", str(out)])
    assert result.exit_code == 0, result.output
    browser.get(out.as_uri())  # type: ignore[attr-defined]
    assert _console_errors(browser) == []
    assert "Leaderboard" in browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert browser.find_elements(By.CSS_SELECTOR, "svg polygon")  # type: ignore[attr-defined]  # the radar
    sources = [a.get_attribute("src") for a in browser.find_elements(By.TAG_NAME, "audio")]  # type: ignore[attr-defined]
    assert sources and all(Path(unquote(urlparse(s).path)).is_file() for s in sources)
    first = browser.find_element(By.CSS_SELECTOR, "details.sample")  # type: ignore[attr-defined]
    first.find_element(By.TAG_NAME, "summary").click()
    captions = [c.text for c in first.find_elements(By.TAG_NAME, "caption")]
    assert any("order AB" in c for c in captions) and any("order BA" in c for c in captions)
    page = browser.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert INJECTED in page or any(
        INJECTED in d.text for d in browser.find_elements(By.CSS_SELECTOR, ".text")
    )  # type: ignore[attr-defined]
    assert browser.execute_script("return [window.__pwned, window.__pwned2]") == [None, None]  # type: ignore[attr-defined]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def viewer(runs: Path) -> Iterator[str]:
    uvicorn = pytest.importorskip("uvicorn")
    from speechrole.view import create_app

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(runs), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_viewer_in_a_browser_filters_plays_and_stores_a_blind_rating(
    runs: Path, viewer: str, browser: object
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    b = browser
    b.get(viewer + "/")  # type: ignore[attr-defined]
    assert "alpha" in b.find_element(By.TAG_NAME, "body").text and b.find_elements(
        By.CSS_SELECTOR, "svg polygon"
    )  # type: ignore[attr-defined]
    b.get(viewer + "/samples")  # type: ignore[attr-defined]
    all_rows = len(b.find_elements(By.CSS_SELECTOR, "#samples tr")) - 1  # type: ignore[attr-defined]
    Select(b.find_element(By.NAME, "run")).select_by_value("alpha")  # type: ignore[attr-defined]
    Select(b.find_element(By.NAME, "mode")).select_by_value("single")  # type: ignore[attr-defined]
    Select(b.find_element(By.NAME, "sort")).select_by_value("gap")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "form.filters button").click()  # type: ignore[attr-defined]
    _wait(b, lambda d: "run=alpha" in d.current_url)
    rows = b.find_elements(By.CSS_SELECTOR, "#samples tr")[1:]  # type: ignore[attr-defined]
    assert 0 < len(rows) < all_rows and all(
        r.find_elements(By.TAG_NAME, "td")[3].text == "single" for r in rows
    )
    gaps = [float(r.find_elements(By.TAG_NAME, "td")[7].text) for r in rows]
    assert gaps == sorted(gaps)  # agent furthest below the reference first
    # the sample holding the injected answer: shown as text, not run; its audio is served
    b.get(viewer + "/samples?run=alpha&mode=single&sort=key")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#samples a").click()  # type: ignore[attr-defined]
    _wait(b, lambda d: "/sample?" in d.current_url)
    assert INJECTED in b.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert b.execute_script("return [window.__pwned, window.__pwned2]") == [None, None]  # type: ignore[attr-defined]
    sources = [a.get_attribute("src") for a in b.find_elements(By.TAG_NAME, "audio")]  # type: ignore[attr-defined]
    assert sources and all(httpx.get(s).status_code == 200 for s in sources)
    assert _console_errors(b) == []
    # blind A/B: the page names no side; the rating lands in the database, mapped back
    b.get(viewer + "/rate?rater=tester")  # type: ignore[attr-defined]
    html = b.page_source  # type: ignore[attr-defined]
    assert "model_output" not in html and "_role.wav" not in html
    for metric in METRICS:
        Select(b.find_element(By.NAME, f"a_{metric}")).select_by_visible_text("8")  # type: ignore[attr-defined]
        Select(b.find_element(By.NAME, f"b_{metric}")).select_by_visible_text("4")  # type: ignore[attr-defined]
    b.find_element(By.CSS_SELECTOR, "#rating button").click()  # type: ignore[attr-defined]
    _wait(b, lambda d: "1 rated so far" in d.find_element(By.TAG_NAME, "body").text)
    assert "1 rated so far" in b.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    with sqlite3.connect(runs / "ratings.sqlite") as db:
        rows = db.execute("SELECT rater, metric, agent, reference, a_is FROM ratings").fetchall()
    assert len(rows) == 8 and {r[0] for r in rows} == {"tester"}
    a_is = rows[0][4]
    assert all((r[2], r[3]) == ((8, 4) if a_is == "agent" else (4, 8)) for r in rows)
    assert _console_errors(b) == []


def test_viewer_refuses_paths_outside_what_the_runs_name(viewer: str) -> None:
    with httpx.Client(base_url=viewer) as client:
        page = client.get("/samples").text
        media = page and client.get("/sample", params={"run": "alpha", "key": "single/" + "x"})
        assert media.status_code == 404
        for path in ("/media/m0/..%2F..%2F..%2Fetc%2Fpasswd", "/media/m0/passwd", "/media/m99999/x.wav"):
            assert client.get(path).status_code == 404
        assert client.get("/sample", params={"run": "../../etc", "key": "passwd"}).status_code == 404
        assert client.get("/blind/nope/A/0").status_code == 404
        page = client.get("/rate", params={"rater": "x"}).text
        token = re.search(r'name="token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
        forged = client.post("/rate", data={"task": "nope", "rater": "x", "token": token})
        assert forged.status_code == 400
        foreign = client.post("/rate", data={"task": "x"}, headers={"origin": "http://evil.example"})
        assert foreign.status_code == 403


def test_agreement_from_ratings_entered_in_the_viewer(runs: Path, viewer: str) -> None:
    """Two raters rate every sample of `beta` through the viewer's form; the first rater follows the
    judge's ratios closely, the second adds noise; agreement prints per-metric correlations and alphas."""
    import zlib

    from speechrole.results import read_any
    from speechrole.score.sample import sample_score

    judged = {}
    for system in read_any("beta", runs / "beta"):
        for j in system.judgments:
            judged.setdefault(j.sample, []).append(j)
    with sqlite3.connect(runs / "ratings.sqlite") as db:  # only this test's ratings count below
        db.execute("DELETE FROM ratings")
    with httpx.Client(base_url=viewer) as client:
        for rater, noise in (("r1", 0), ("r2", 1)):
            while True:
                page = client.get("/rate", params={"rater": rater, "run": "beta"}).text
                found = re.search(r'name="task" value="([0-9a-f]+)"', page)
                if not found:
                    break
                task = found.group(1)
                token = re.search(r'name="token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
                with sqlite3.connect(runs / "ratings.sqlite") as db:
                    sample, a_is = db.execute(
                        "SELECT sample, a_is FROM tasks WHERE id = ?", (task,)
                    ).fetchone()
                ratios = sample_score(judged[sample]).ratio
                form = {"task": task, "rater": rater, "token": token}
                for metric in METRICS:
                    jitter = zlib.crc32(f"{sample}{metric}".encode()) % (2 * noise + 1) - noise  # order-free
                    agent = max(1, min(10, round(5 * ratios[metric]) + jitter))
                    a, b = (agent, 5) if a_is == "agent" else (5, agent)
                    form |= {f"a_{metric}": str(a), f"b_{metric}": str(b)}
                assert client.post("/rate", data=form).status_code == 303
    result = runner.invoke(app, ["agreement", str(runs), "--format", "json", "--replicates", "200"])
    assert result.exit_code == 0, result.output
    reports = json.loads(result.stdout)  # one report per judge configuration, never pooled
    report = next(r for r in reports if r["judge"].startswith("swap"))
    assert set(report["raters"]) >= {"r1", "r2"}
    overall = next(m for m in report["metrics"] if m["metric"] == "overall")
    # repeated judgments are the same task asked again: the two orders of swap are not repeats
    assert overall["n_paired"] == 12 and overall["n_rater_units"] == 12 and overall["n_repeat_units"] == 0
    assert overall["spearman"]["value"] > 0.8 and overall["spearman"]["low"] is not None
    assert overall["alpha_raters"]["value"] is not None and overall["alpha_judge"]["value"] is None
    table = runner.invoke(app, ["agreement", str(runs), "--replicates", "200"])
    assert table.exit_code == 0 and "Spearman" in table.stdout and "alpha raters" in table.stdout
