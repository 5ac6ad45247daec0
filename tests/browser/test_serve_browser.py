"""The web page in a real browser: Playwright drives Debian's headless chromium against the app
served by uvicorn (stand-in grid detector, see ``tests/serve_support.py``).

Set ``CUNEIDET_SCREENSHOTS=<folder>`` to save PNGs of the page's main states there.
"""

from __future__ import annotations

import csv
import io
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from cuneidet.serve.app import create_app
from tests.fixtures_font import make_cuneiform_font
from tests.serve_support import PASSWORD, add_user, grid_model, make_app, settings, wait_for_job

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "Debian chromium not installed: make install installs it with apt",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api")
expect = sync_api.expect

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ADMIN = "admin"
VIEWPORT = {"width": 1400, "height": 900}
#: the test server's pixel limit: the "large" photo exceeds it
MAX_PIXELS = 2_000_000
#: columns of the exported CSV (the reference detections format, ", "-separated)
CSV_COLUMNS = {"imageName", "mzl_label", "x1", "y1", "x2", "y2", "det_score"}


# --------------------------------------------------------------------------- helpers


def screenshot(page, name: str) -> None:
    """Save the page as ``<name>.png`` when ``CUNEIDET_SCREENSHOTS`` names a folder."""
    folder = os.environ.get("CUNEIDET_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"))


def tablet_photo(path: Path, seed: int) -> Path:
    """A light 'tablet' with rows of dark rectangles as signs."""
    image = Image.new("RGB", (1000, 720), (198, 176, 146))
    draw = ImageDraw.Draw(image)
    for row, y in enumerate(range(50, 620, 150)):
        for col, x in enumerate(range(40, 920, 135)):
            shift = (seed * 7 + row * 3 + col * 5) % 20
            draw.rectangle([x + shift, y, x + shift + 70, y + 90], fill=(70, 56, 42))
    image.save(path)
    return path


def shown_count(page) -> int:
    """The N of the status line 'N of M signs shown'."""
    text = page.locator("#shown-count").text_content() or ""
    match = re.match(r"(\d+) of (\d+)", text)
    assert match, text
    return int(match.group(1))


def log_in(page, base_url: str, username: str = ADMIN, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/#/login")
    page.fill("#login-username", username)
    page.fill("#login-password", password)
    page.click("#login-submit")
    expect(page.locator("#logout-button")).to_be_visible()


def open_photo(page, base_url: str, photo_id: int) -> None:
    log_in(page, base_url)
    page.goto(f"{base_url}/#/photo/{photo_id}")
    expect(page.locator("rect.sign").first).to_be_attached()


def draw_strokes(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Draw on ``#draw-canvas`` with the mouse; points are fractions (0…1) of the canvas."""
    area = page.locator("#draw-canvas").bounding_box()
    assert area is not None

    def at(point: tuple[float, float]) -> tuple[float, float]:
        return area["x"] + point[0] * area["width"], area["y"] + point[1] * area["height"]

    for stroke in strokes:
        page.mouse.move(*at(stroke[0]))
        page.mouse.down()
        for point in stroke[1:]:
            page.mouse.move(*at(point), steps=8)
        page.mouse.up()


#: a box with a cross in it: five strokes
BOX_WITH_CROSS = [
    [(0.2, 0.2), (0.8, 0.2), (0.8, 0.8), (0.2, 0.8), (0.2, 0.2)],
    [(0.5, 0.25), (0.5, 0.75)],
    [(0.25, 0.5), (0.75, 0.5)],
    [(0.3, 0.3), (0.7, 0.7)],
    [(0.7, 0.3), (0.3, 0.7)],
]


def ink_pixels(page) -> int:
    """The dark pixels of ``#draw-canvas`` (its backing store)."""
    return page.locator("#draw-canvas").evaluate(
        """async canvas => {
            await new Promise((resolve) => requestAnimationFrame(resolve));  // a pending redraw
            const { width, height } = canvas;
            const data = canvas.getContext('2d').getImageData(0, 0, width, height).data;
            let dark = 0;
            for (let i = 0; i < data.length; i += 4) if (data[i] < 128) dark += 1;
            return dark;
        }"""
    )


def draw_modes(api: httpx.Client, timeout: float = 30.0) -> dict[str, dict]:
    """``GET /api/draw/modes`` by mode, once no model is still loading (not ready, no error)."""
    deadline = time.monotonic() + timeout
    while True:
        modes = {m["mode"]: m for m in api.get("/api/draw/modes").json()}
        if all(m["ready"] or m["error"] for m in modes.values()) or time.monotonic() > deadline:
            return modes
        time.sleep(0.2)


def best_colour(probability: float) -> str:
    """The colour of the best candidate: green above 0.5, red below 0.0001, else yellow."""
    if probability > 0.5:
        return "green"
    return "red" if probability < 0.0001 else "yellow"


def check_draw_results(page, expected_rows: int) -> list[float]:
    """The shown ranking: ranks 1…n, probabilities falling, the best row coloured by the rule."""
    rows = page.locator("#draw-results tr.draw-result")
    expect(rows).to_have_count(expected_rows)
    ranks = rows.locator("td.draw-rank").all_text_contents()
    assert ranks == [str(rank) for rank in range(1, expected_rows + 1)]
    cells = rows.locator("td.draw-probability")
    probabilities = [float(p) for p in cells.evaluate_all("cells => cells.map(c => c.title)")]
    assert all(0 <= p <= 1 for p in probabilities), probabilities
    assert probabilities == sorted(probabilities, reverse=True), probabilities
    for text in cells.all_text_contents():
        assert re.fullmatch(r"(> )?\d+(\.\d+)?(e-\d+)? %", text), text
    colour = best_colour(probabilities[0])
    expect(rows.first).to_have_class(re.compile(rf"(^|\s)best best-{colour}(\s|$)"))
    expect(page.locator("#draw-results tr.best")).to_have_count(1)
    expect(rows.first.locator("td.draw-sign")).not_to_be_empty()
    expect(page.locator("#draw-input")).to_have_attribute(
        "src", re.compile(r"^data:image/png;base64,.")
    )
    shown = page.locator("#draw-input")
    assert shown.evaluate("img => img.decode().then(() => img.naturalWidth)") > 0
    return probabilities


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("upload")
    fake = folder / "fake.jpg"
    fake.write_text("this is text, not a photo\n")
    large = folder / "large.png"
    Image.new("L", (1800, 1500), 180).save(large)
    heavy = folder / "heavy.tif"  # above the test server's 4 MiB: refused before sending
    heavy.write_bytes(bytes(5 * 1024 * 1024))
    return {
        "heavy": heavy,
        "large": large,
        "tablet_a": tablet_photo(folder / "tablet_a.png", 1),
        "tablet_b": tablet_photo(folder / "tablet_b.png", 2),
        "fake": fake,
    }


@contextmanager
def serving(app) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port in a thread; yields its URL."""
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def base_url(tmp_path_factory) -> Iterator[str]:
    """The app (grid detector, test font, an administrator) on a free port."""
    folder = tmp_path_factory.mktemp("serve")
    font = make_cuneiform_font(folder / "cuneiform.ttf")
    app = make_app(folder, font_file=font, max_pixels=MAX_PIXELS)
    add_user(app, ADMIN, admin=True)
    with serving(app) as url:
        yield url


@pytest.fixture(scope="module")
def api(base_url: str) -> Iterator[httpx.Client]:
    """The administrator's API client (cookie and CSRF header), to prepare data quickly."""
    with httpx.Client(base_url=base_url, timeout=30) as client:
        answer = client.post("/api/login", json={"username": ADMIN, "password": PASSWORD})
        assert answer.status_code == 200, answer.text
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        yield client


@pytest.fixture(scope="module")
def photo(api: httpx.Client, files: dict[str, Path]) -> dict:
    """A photo with detected signs, made through the API."""
    collection = api.post("/api/collections", json={"name": "Prepared"}).json()
    with files["tablet_a"].open("rb") as handle:
        answer = api.post(
            f"/api/collections/{collection['id']}/photos",
            files={"files": ("prepared.png", handle, "image/png")},
        )
    assert answer.status_code == 201, answer.text
    photo = answer.json()["photos"][0]
    job = api.post(f"/api/photos/{photo['id']}/detect", json={}).json()
    assert wait_for_job(api, job["id"])["status"] == "done"
    return api.get(f"/api/photos/{photo['id']}").json()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("dialog", lambda dialog: dialog.accept())
    yield page
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# --------------------------------------------------------------------------- tests


def test_login_shows_a_wrong_password_then_logs_in(page, base_url: str) -> None:
    page.goto(base_url + "/")
    expect(page.locator("#login-username")).to_be_visible()
    screenshot(page, "01_login")
    page.fill("#login-username", ADMIN)
    page.fill("#login-password", "not the password")
    page.click("#login-submit")
    message = page.locator("#message")
    expect(message).to_be_visible()
    expect(message).to_have_attribute("role", "alert")
    expect(message).to_contain_text("wrong user name or password")
    page.fill("#login-password", PASSWORD)
    page.click("#login-submit")
    expect(page.locator("#collection-name")).to_be_visible()
    expect(message).to_be_hidden()
    expect(page.locator("#current-user")).to_contain_text(ADMIN)
    expect(page.locator("#nav-admin")).to_be_visible()


def test_upload_refusal_and_detect_all(page, base_url: str, files: dict[str, Path]) -> None:
    log_in(page, base_url)
    page.fill("#collection-name", "Kültepe letters <b>1</b>")
    page.click("#collection-create")
    row = page.locator("#collection-table tbody tr", has_text="Kültepe letters <b>1</b>")
    expect(row).to_have_count(1)  # the name is shown as text, not markup
    row.locator("a.collection-open").click()
    expect(page.locator("#collection-title")).to_have_text("Kültepe letters <b>1</b>")

    page.set_input_files(
        "#upload-input",
        [str(files[name]) for name in ("tablet_a", "fake", "tablet_b", "large", "heavy")],
    )
    expect(page.locator("#photo-table tbody tr")).to_have_count(2)
    refused = page.locator("li.upload.refused")
    expect(refused).to_have_count(3)
    expect(page.locator("li.upload.done")).to_have_count(2)
    fake = page.locator('li.upload.refused[data-name="fake.jpg"] .upload-result')
    expect(fake).to_contain_text("not a JPEG, PNG or TIFF")  # 415
    large = page.locator('li.upload.refused[data-name="large.png"] .upload-result')
    expect(large).to_contain_text("exceeds the limit")  # 413
    heavy = page.locator('li.upload.refused[data-name="heavy.tif"] .upload-result')
    expect(heavy).to_contain_text("the server takes at most 4.0 MB")
    message = page.locator("#message")
    expect(message).to_contain_text("fake.jpg")
    expect(message).to_contain_text("not a JPEG, PNG or TIFF")
    expect(message).to_contain_text("large.png")

    page.click("#detect-all")
    statuses = page.locator("#photo-table .photo-status")
    for index in range(2):
        expect(statuses.nth(index)).to_have_text("done", timeout=30_000)
    expect(page.locator("#photo-table .photo-signs").first).not_to_have_text("0")
    expect(page.locator("#export-training")).not_to_have_attribute("href", re.compile("."))
    expect(page.locator("#counts-table tbody tr").first).to_be_attached()
    counts = page.locator("#counts-table tbody tr").count()
    assert counts > 0
    screenshot(page, "03_collection_uploads")

    page.click("#nav-collections")
    expect(row.locator("td").nth(1)).to_have_text("2")
    screenshot(page, "02_collections")


def test_photo_boxes_and_filters(page, base_url: str, photo: dict) -> None:
    open_photo(page, base_url, photo["id"])
    viewer = page.locator("#viewer")
    assert viewer.get_attribute("viewBox") == f"0 0 {photo['width']} {photo['height']}"
    image = page.locator("#viewer-image")
    assert image.get_attribute("width") == str(photo["width"])
    assert image.get_attribute("height") == str(photo["height"])
    boxes = page.locator("rect.sign")
    total = boxes.count()
    assert total > 0
    assert shown_count(page) == total
    expect(page.locator("#score-value")).to_have_text("0.30")
    expect(page.locator("text.sign-label").first).to_be_attached()
    screenshot(page, "04_photo_boxes")

    page.locator("#score-threshold").fill("0.8")
    expect(page.locator("#score-value")).to_have_text("0.80")
    assert 0 < shown_count(page) < total
    assert boxes.count() == shown_count(page)
    expect(page.locator("#export-csv")).to_have_attribute("href", re.compile(r"min_score=0\.8"))
    page.locator("#score-threshold").fill("0")

    options = page.locator("#class-filter option")
    assert options.count() >= 3  # "all" and at least two classes
    page.select_option("#class-filter", index=1)
    chosen = page.locator("#class-filter").input_value()
    filtered = shown_count(page)
    assert 0 < filtered < total
    assert boxes.count() == filtered
    page.select_option("#class-filter", "all")
    assert shown_count(page) == total

    lines = page.locator("#line-filter option")
    assert lines.count() >= 2
    page.select_option("#line-filter", index=1)
    assert 0 < shown_count(page) < total
    page.select_option("#line-filter", "all")
    assert chosen

    page.select_option("#colour-mode", "confidence")
    page.uncheck("#labels-toggle")
    expect(page.locator("text.sign-label")).to_have_count(0)
    page.check("#labels-toggle")

    before = viewer.get_attribute("viewBox")
    page.click("#zoom-in")
    zoomed = viewer.get_attribute("viewBox")
    assert zoomed != before
    assert float(zoomed.split()[2]) < photo["width"]
    page.click("#zoom-fit")
    assert viewer.get_attribute("viewBox") == before

    area = viewer.bounding_box()
    assert area is not None
    centre_x, centre_y = area["x"] + area["width"] / 2, area["y"] + area["height"] / 2
    page.mouse.move(centre_x, centre_y)
    page.mouse.wheel(0, -400)
    expect(viewer).not_to_have_attribute("viewBox", before)
    x, y, width, _ = (float(v) for v in viewer.get_attribute("viewBox").split())
    assert width < photo["width"]
    page.mouse.down()
    page.mouse.move(centre_x - 60, centre_y - 40, steps=4)
    page.mouse.up()
    moved_x, moved_y, moved_width, _ = (float(v) for v in viewer.get_attribute("viewBox").split())
    assert moved_x > x and moved_y > y and moved_width == width

    page.keyboard.press("n")
    expect(page.locator("#sign-panel")).to_be_visible()
    expect(page.locator("rect.sign.selected")).to_have_count(1)
    page.keyboard.press("Escape")
    expect(page.locator("#sign-panel")).to_be_hidden()


def test_sign_panel_change_class_and_delete(page, base_url: str, photo: dict) -> None:
    open_photo(page, base_url, photo["id"])
    total = shown_count(page)
    box = page.locator("rect.sign").first
    sign_id = box.get_attribute("data-id")
    box.click()
    panel = page.locator("#sign-panel")
    expect(panel).to_be_visible()
    rows = page.locator("#topk-table tbody tr")
    assert 1 <= rows.count() <= 5
    cells = rows.first.locator("td")
    assert cells.nth(0).text_content() == "1"
    assert re.fullmatch(r"\d\.\d\d", cells.nth(4).text_content() or "")
    first_name = cells.nth(2).text_content()
    expect(page.locator("#sign-summary")).to_contain_text(first_name)
    expect(page.locator(f'rect.sign.selected[data-id="{sign_id}"]')).to_have_count(1)
    screenshot(page, "05_sign_panel")

    options = page.locator("#class-list option")
    expect(options.first).to_be_attached()
    assert options.count() == 7
    target = "KUR" if first_name != "KUR" else "MAN"
    value = next(v for v in options.evaluate_all("o => o.map(x => x.value)") if target in v)
    page.fill("#class-input", value)
    page.click("#change-class")
    expect(page.locator("#sign-summary")).to_contain_text(target)
    expect(page.locator("#sign-summary")).to_contain_text("edited")

    page.click("#delete-sign")
    expect(panel).to_be_hidden()
    expect(page.locator(f'rect.sign[data-id="{sign_id}"]')).to_have_count(0)
    assert shown_count(page) == total - 1


def test_draw_a_box(page, base_url: str, photo: dict) -> None:
    open_photo(page, base_url, photo["id"])
    before = page.locator("rect.sign.user").count()
    page.click("#draw-toggle")
    expect(page.locator("#draw-toggle")).to_have_attribute("aria-pressed", "true")
    area = page.locator("#viewer").bounding_box()
    assert area is not None
    x, y = area["x"] + area["width"] * 0.5, area["y"] + area["height"] * 0.85
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 40, y + 30, steps=4)
    page.mouse.move(x + 70, y + 50, steps=4)
    page.mouse.up()
    expect(page.locator("#draw-panel")).to_be_visible()
    page.fill("#draw-class-input", "NA")
    screenshot(page, "06_draw_mode")
    page.click("#draw-save")
    expect(page.locator("rect.sign.user")).to_have_count(before + 1)
    expect(page.locator("#sign-summary")).to_contain_text("NA")
    expect(page.locator("#sign-summary")).to_contain_text("drawn by hand")
    drawn = page.locator("rect.sign.user").last
    assert float(drawn.get_attribute("width")) > 10
    assert float(drawn.get_attribute("height")) > 10


def test_run_detection_scale_and_review(page, base_url: str, photo: dict) -> None:
    open_photo(page, base_url, photo["id"])
    expect(page.locator("#scale-auto")).to_be_checked()
    expect(page.locator("#scale-auto-value")).to_contain_text("Found automatically")
    expect(page.locator("#scale-number")).to_be_disabled()
    page.uncheck("#scale-auto")
    page.locator("#scale-slider").fill("1.5")
    expect(page.locator("#scale-number")).to_have_value("1.50")
    page.locator("#scale-number").fill("1.25")
    page.locator("#scale-number").press("Enter")
    expect(page.locator("#scale-slider")).to_have_value("1.25")
    expect(page.locator("#photo-info")).to_contain_text("status done")

    page.click("#detect-button")
    expect(page.locator("#job-message")).to_contain_text("at scale 1.25", timeout=30_000)
    expect(page.locator("#job-progress")).to_be_hidden()
    expect(page.locator("rect.sign").first).to_be_attached()

    page.check("#reviewed-toggle")
    expect(page.locator("#reviewed-toggle")).to_be_checked()
    page.check("#scale-auto")
    expect(page.locator("#scale-number")).to_be_disabled()
    page.reload()
    expect(page.locator("#reviewed-toggle")).to_be_checked()
    expect(page.locator("#scale-auto")).to_be_checked()
    page.click("#photo-back")
    expect(page.locator("#export-training")).to_have_attribute(
        "href", re.compile(r"format=training")
    )
    expect(page.locator("#export-training-note")).to_contain_text("1 reviewed photo")


def test_export_csv_download(page, base_url: str, photo: dict) -> None:
    open_photo(page, base_url, photo["id"])
    with page.expect_download() as info:
        page.click("#export-csv")
    download = info.value
    assert download.suggested_filename.endswith(".csv")
    text = Path(download.path()).read_text(encoding="utf-8")
    rows = list(csv.reader(io.StringIO(text), skipinitialspace=True))
    assert set(rows[0]) >= CSV_COLUMNS, rows[0]
    assert len(rows) > 1


def test_admin_creates_and_disables_a_user(page, base_url: str) -> None:
    log_in(page, base_url)
    page.click("#nav-admin")
    expect(page.locator("#user-table tbody tr")).not_to_have_count(0)
    page.fill("#new-user-username", "enki")
    page.fill("#new-user-password", "a long enough password")
    page.click("#new-user-create")
    row = page.locator("#user-table tbody tr", has_text="enki")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("active")
    row.locator("button.user-toggle").click()
    expect(row).to_contain_text("disabled")
    expect(row.locator("button.user-toggle")).to_have_text("Enable")
    screenshot(page, "07_admin")
    row.locator("button.user-toggle").click()
    expect(row.locator("button.user-toggle")).to_have_text("Disable")


def test_draw_a_sign_and_recognise_it(page, base_url: str, api: httpx.Client) -> None:
    modes = draw_modes(api)
    assert set(modes) == {"oracle", "cuneiform"}
    assert modes["oracle"]["ready"], modes["oracle"]
    log_in(page, base_url)
    page.click("#nav-draw")
    expect(page.locator("#nav-draw")).to_have_attribute("aria-current", "page")
    expect(page.locator("#draw-canvas")).to_be_visible()
    expect(page.locator("#draw-mode-oracle")).to_be_checked()
    expect(page.locator('label.draw-mode[data-mode="oracle"]')).to_contain_text(
        modes["oracle"]["description"]
    )
    expect(page.locator("#draw-undo")).to_be_disabled()
    assert ink_pixels(page) == 0

    # the page's number formats and the colour rule, on their edges
    formats = page.evaluate(
        """async () => {
            const { fmtPercent } = await import('/static/js/format.js');
            const { bestColour } = await import('/static/js/views/draw.js');
            return [[0.998, 0.03456, 0.00012, 2e-7, 0.9999999, 1].map(fmtPercent),
                    [0.5000001, 0.5, 0.0001, 0.0000999].map(bestColour)];
        }"""
    )
    assert formats == [
        ["99.8 %", "3.5 %", "0.012 %", "2.0e-5 %", "> 99.9 %", "100.0 %"],
        ["green", "yellow", "yellow", "red"],
    ]

    draw_strokes(page, BOX_WITH_CROSS)
    expect(page.locator("#draw-undo")).to_be_enabled()
    full = ink_pixels(page)
    assert full > 1000
    page.keyboard.press("Control+z")  # the last diagonal goes
    assert 0 < ink_pixels(page) < full
    draw_strokes(page, BOX_WITH_CROSS[-1:])
    assert ink_pixels(page) == full  # the strokes are drawn again from their points

    with page.expect_response("**/api/draw/oracle") as answer:
        page.click("#draw-run")
    assert answer.value.status == 200, answer.value.text()
    check_draw_results(page, 10)
    expect(page.locator("#message")).to_be_hidden()
    screenshot(page, "08_draw_oracle")

    page.click("#draw-clear")
    expect(page.locator("#draw-undo")).to_be_disabled()
    assert ink_pixels(page) == 0
    with page.expect_response("**/api/draw/oracle") as answer:
        page.click("#draw-run")
    assert answer.value.status == 400
    expect(page.locator("#message")).to_contain_text(
        re.compile("draw a character first", re.IGNORECASE)
    )
    expect(page.locator("#draw-result")).to_be_hidden()

    cuneiform = modes["cuneiform"]
    if not cuneiform["ready"]:
        expect(page.locator("#draw-mode-cuneiform")).to_be_disabled()
        error = page.locator('label.draw-mode[data-mode="cuneiform"] .draw-mode-error')
        expect(error).to_have_text(cuneiform["error"])
        return
    page.check("#draw-mode-cuneiform")
    draw_strokes(page, BOX_WITH_CROSS[:3])
    with page.expect_response("**/api/draw/cuneiform") as answer:
        page.click("#draw-run")
    assert answer.value.status == 200, answer.value.text()
    expect(page.locator("#message")).to_be_hidden()
    check_draw_results(page, min(10, cuneiform["classes"]))
    expect(page.locator("#draw-results td.draw-mzl").first).not_to_be_empty()
    screenshot(page, "09_draw_cuneiform")


def test_expired_session_returns_to_login(page, base_url: str) -> None:
    log_in(page, base_url)
    expect(page.locator("#collection-name")).to_be_visible()
    page.context.clear_cookies()
    page.fill("#collection-name", "never created")
    page.click("#collection-create")
    expect(page.locator("#login-username")).to_be_visible()
    expect(page.locator("#message")).to_contain_text(
        re.compile("session expired, please log in again", re.IGNORECASE)
    )


def test_first_start_setup_and_login_rate_limit(page, tmp_path) -> None:
    app = make_app(tmp_path, login_attempts=2)
    token = app.state.cuneidet.setup_token
    with serving(app) as url:
        page.goto(url + "/")
        expect(page.locator("#setup-token")).to_be_visible()
        page.fill("#setup-token", "not the token")
        page.fill("#setup-username", "ea")
        page.fill("#setup-password", PASSWORD)
        page.click("#setup-submit")
        expect(page.locator("#message")).to_contain_text("wrong setup token")
        page.fill("#setup-token", token)
        page.click("#setup-submit")
        expect(page.locator("#current-user")).to_have_text("ea (admin)")
        expect(page.locator("#collection-name")).to_be_visible()

        page.click("#logout-button")
        expect(page.locator("#login-username")).to_be_visible()
        page.fill("#login-username", "ea")
        for _ in range(3):
            page.fill("#login-password", "guess")
            with page.expect_response("**/api/login") as answer:
                page.click("#login-submit")
            if answer.value.status == 429:
                break
        assert answer.value.status == 429
        expect(page.locator("#message")).to_contain_text("too many failed logins")


def failing_detection(model, path, scale, settings, progress):
    progress(0.4, "looking for signs")
    raise RuntimeError("the photo has no readable surface")


def test_failed_detection_shows_the_job_error(page, tmp_path, files: dict[str, Path]) -> None:
    app = create_app(settings(tmp_path), loader=grid_model, detect=failing_detection)
    add_user(app, ADMIN, admin=True)
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        answer = client.post("/api/login", json={"username": ADMIN, "password": PASSWORD})
        client.headers["X-CSRF-Token"] = answer.json()["csrf_token"]
        collection = client.post("/api/collections", json={"name": "Failing"}).json()
        with files["tablet_a"].open("rb") as handle:
            uploaded = client.post(
                f"/api/collections/{collection['id']}/photos",
                files={"files": ("failing.png", handle, "image/png")},
            ).json()
        photo_id = uploaded["photos"][0]["id"]

        log_in(page, url)
        page.goto(f"{url}/#/photo/{photo_id}")
        expect(page.locator("#shown-count")).to_have_text("0 of 0 signs shown")
        page.click("#detect-button")
        expect(page.locator("#message")).to_contain_text("the photo has no readable surface")
        expect(page.locator("#job-message")).to_contain_text("failed")
        expect(page.locator("#detect-button")).to_be_enabled()
        page.click("#photo-back")
        status = page.locator(f'#photo-table tr[data-id="{photo_id}"] .photo-status')
        expect(status).to_have_text("failed")
