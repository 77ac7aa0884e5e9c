"""What a user sees in the MLflow UI after ``xent-train``: a real server, a real run, Debian's Chromium.

One 2-epoch ``xent-train`` run goes to a real ``mlflow server``; headless Chromium (driven by playwright with
``executable_path``, nothing downloaded) then opens the pages a user would. Screenshots go to the test's tmp
dir and to ``test-artifacts/``. MLflow 3.17's UI is a React app, so every check waits for its element.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.e2e.conftest import CHROMIUM_ARGS, FAST, run_xent_train, save_screenshot

pytestmark = pytest.mark.slow

EPOCHS = 2
EXPERIMENT = "e2e-ui"
# The React app renders slowly on 2 busy cores.
UI_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def trained_run(chromium_executable, tracking_server, tmp_path_factory) -> dict[str, str]:
    """A 2-epoch ``xent-train`` run logged to the tracking server; its experiment and run ids."""
    cwd = tmp_path_factory.mktemp("ui-run")
    result = run_xent_train(
        cwd,
        f"logger.tracking_uri={tracking_server.url}",
        f"logger.experiment_name={EXPERIMENT}",
        f"trainer.max_epochs={EPOCHS}",
        *FAST,
    )
    client = MlflowClient(tracking_server.url)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    steps = [point.step for point in client.get_metric_history(run.info.run_id, "val/cross_entropy")]
    return {
        "experiment_id": experiment.experiment_id,
        "run_id": run.info.run_id,
        "run_name": run.info.run_name,
        "steps": steps,
        "link": re.search(r"review it at (\S+)", result.stdout + result.stderr)[1],
    }


@pytest.fixture
def page(chromium_executable, tmp_path) -> Iterator[object]:
    """A page in a fresh headless Chromium profile; the browser is closed afterwards."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=chromium_executable,
            headless=True,
            args=list(CHROMIUM_ARGS),
            viewport={"width": 1600, "height": 1100},
        )
        try:
            page = context.new_page()
            page.set_default_timeout(UI_TIMEOUT_MS)
            yield page
        finally:
            context.close()


def test_the_experiment_and_the_run_are_listed(page, tracking_server, trained_run, tmp_path):
    page.goto(f"{tracking_server.url}/#/experiments")
    page.get_by_role("link", name=EXPERIMENT, exact=True).wait_for()
    save_screenshot(page, tmp_path, "ui-experiments")

    page.goto(f"{tracking_server.url}/#/experiments/{trained_run['experiment_id']}/runs")
    page.get_by_role("link", name=trained_run["run_name"], exact=True).wait_for()
    save_screenshot(page, tmp_path, "ui-runs")


@pytest.mark.parametrize("metric", ["val/cross_entropy", "val/ece"])
def test_the_run_page_charts_the_validation_metric_once_per_epoch(page, tracking_server, trained_run, tmp_path, metric):
    page.goto(_run_page(tracking_server.url, trained_run, "model-metrics"))
    page.get_by_placeholder("Search metric charts").fill(metric)
    # Each line chart's legend reads "<run name> (<metric key>)".
    card = _chart_card(page).filter(has_text=f"{trained_run['run_name']} ({metric})")
    card.wait_for()
    points = card.locator(".scatterlayer .points path")
    points.nth(EPOCHS - 1).wait_for()
    save_screenshot(card, tmp_path, f"ui-chart-{metric.replace('/', '-')}")

    assert points.count() == EPOCHS


def test_the_diagram_card_shows_each_epochs_reliability_diagram_at_thumbnail_size(
    page, tracking_server, trained_run, tmp_path
):
    page.goto(_run_page(tracking_server.url, trained_run, "model-metrics"))
    page.get_by_placeholder("Search metric charts").fill("val/reliability")
    card = _chart_card(page).filter(has=page.get_by_role("heading", name="val/reliability", exact=True))
    card.locator("[data-component-id=fullscreen_button_chartcard]").click()
    dialog = page.get_by_role("dialog")
    slider = dialog.get_by_role("slider")
    slider.wait_for()

    # One image per epoch behind the step slider, at the steps of the epoch's validation values.
    steps = trained_run["steps"]
    assert len(steps) == EPOCHS
    assert slider.get_attribute("aria-valuemax") == str(steps[-1])
    for step in steps:
        if slider.get_attribute("aria-valuenow") != str(step):
            slider.press("ArrowRight")  # the slider stops at each logged step
        assert slider.get_attribute("aria-valuenow") == str(step)
        image = dialog.locator(f"img[src*='val~reliability%2Bstep%2B{step}%2B']")
        image.wait_for()
        image.scroll_into_view_if_needed()
        _wait_until_decoded(image)
        save_screenshot(page, tmp_path, f"ui-image-grid-step-{step}")
        save_screenshot(image, tmp_path, f"ui-diagram-thumbnail-step-{step}")

        # The UI shows the thumbnail MLflow makes to fit 256 px; the 512-px square diagram fills it exactly.
        assert "compressed" in image.get_attribute("src")
        assert image.evaluate("element => [element.naturalWidth, element.naturalHeight]") == [256, 256]


def test_the_artifact_browser_lists_and_renders_each_epochs_reliability_diagram(
    page, tracking_server, trained_run, tmp_path
):
    page.goto(_run_page(tracking_server.url, trained_run, "artifacts"))
    page.get_by_text("images", exact=True).click()
    for step in trained_run["steps"]:
        # MLflow 3 stores log_image(key="val/reliability", step=s) as images/val~reliability+step+<s>+...png
        listed = page.get_by_text(f"val~reliability+step+{step}+").filter(has_text=".png").first
        listed.click()
        page.get_by_text(f"images/val~reliability+step+{step}+").first.wait_for()  # the preview's title
        preview = page.locator("img[src^='blob:']:visible").first
        preview.wait_for()
        _wait_until_decoded(preview)
        save_screenshot(page, tmp_path, f"ui-artifact-step-{step}")

        assert preview.evaluate("element => element.naturalWidth") > 0


def test_the_artifact_browser_shows_each_epochs_reliability_table_as_a_table(
    page, tracking_server, trained_run, tmp_path
):
    from playwright.sync_api import expect

    client = MlflowClient(tracking_server.url)
    folder = "reliability/val/reliability"
    # The address opens the artifact tree at the first epoch's table; the others are clicked in the tree.
    first = f"{folder}/step_{trained_run['steps'][0]:06d}.json"
    page.goto(_run_page(tracking_server.url, trained_run, f"artifacts/{first}"))
    for step in trained_run["steps"]:
        path = f"{folder}/step_{step:06d}.json"
        logged = json.loads(Path(client.download_artifacts(trained_run["run_id"], path, str(tmp_path))).read_text())
        count = logged["columns"].index("count")
        page.get_by_text(f"step_{step:06d}.json", exact=True).click()
        page.get_by_text(path, exact=True).wait_for()  # the preview's title
        # Only MLflow's logged-table view has these headers; a JSON file the run does not list as a table is text.
        table_view_headers = page.locator('[data-component-id$="showartifactloggedtableview.tsx_223"]')
        table = page.get_by_role("table")
        rows = table.get_by_role("row")
        # The header row, then a row per bin; waited for, as the previous step's table may still be on the page.
        expect(rows).to_have_count(1 + len(logged["data"]), timeout=UI_TIMEOUT_MS)
        for row, values in zip(rows.all()[1:], logged["data"], strict=True):
            expect(row.get_by_role("cell").nth(count)).to_have_text(_as_javascript_prints(values[count]))
        save_screenshot(page, tmp_path, f"ui-table-step-{step}")

        assert page.get_by_role("checkbox", name="View as table").is_checked()
        assert table_view_headers.count() == len(logged["columns"])
        assert table.get_by_role("columnheader").all_inner_texts() == logged["columns"]


def test_the_link_xent_train_prints_opens_the_run_and_its_experiment_in_model_training_mode(
    page, tracking_server, trained_run, tmp_path
):
    page.goto(trained_run["link"])
    page.get_by_role("heading", name=trained_run["run_name"]).wait_for()
    sidebar = page.get_by_role("navigation")
    # MLflow's model-training side bar lists runs and models; its GenAI one, traces, sessions and judges.
    sidebar.get_by_role("link", name="Models", exact=True).wait_for()
    assert sidebar.get_by_role("link", name="Judges", exact=True).count() == 0
    save_screenshot(page, tmp_path, "ui-run-page")

    sidebar.get_by_role("link", name="Runs", exact=True).click()
    page.get_by_role("link", name=trained_run["run_name"], exact=True).wait_for()
    save_screenshot(page, tmp_path, "ui-experiment-page")

    assert sidebar.get_by_role("link", name="Judges", exact=True).count() == 0
    assert (
        MlflowClient(tracking_server.url).get_experiment(trained_run["experiment_id"]).tags["mlflow.experimentKind"]
        == "custom_model_development"
    )


def _run_page(url: str, run: dict[str, str], tab: str) -> str:
    return f"{url}/#/experiments/{run['experiment_id']}/runs/{run['run_id']}/{tab}?workflowType=machine_learning"


def _as_javascript_prints(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else repr(number)


def _chart_card(page):
    return page.get_by_test_id("experiment-view-compare-runs-card")


def _wait_until_decoded(image) -> None:
    image.page.wait_for_function(
        "element => element.complete && element.naturalWidth > 0", arg=image.element_handle(), timeout=UI_TIMEOUT_MS
    )
