"""Both themes in real Chromium: banners, verdicts and diffs stay readable in light and dark,
and the toggle switches the theme and remembers it; the README's picture of the studio."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.e2e

COLOURS = """(el) => {
  const s = getComputedStyle(el);
  let node = el, bg = s.backgroundColor;
  while (node && (bg === "rgba(0, 0, 0, 0)" || bg === "transparent")) {
    node = node.parentElement;
    bg = node ? getComputedStyle(node).backgroundColor : "rgb(255,255,255)";
  }
  return [s.color, bg];
}"""


def luminance(colour: str) -> float:
    r, g, b = (int(x) / 255 for x in re.findall(r"\d+", colour)[:3])

    def channel(c: float) -> float:
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(page: Page, selector: str) -> float:
    fg, bg = page.locator(selector).first.evaluate(COLOURS)
    light, dark = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


def show_banners(page: Page) -> None:
    """An error banner and a success banner, from the Preferences tab."""
    page.get_by_role("tab", name="Preferences").click()
    page.click("#pref-score")
    expect(page.locator("#pref-message .notice-error")).to_be_visible()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_banners_are_readable_in_the_systems_theme(browser, studio, scheme):
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1400, "height": 1200})
    page = context.new_page()
    page.goto(studio.url)
    expect(page.locator("#principle-table")).to_contain_text("physical-harm", timeout=30_000)
    assert page.evaluate("document.body.classList.contains('dark')") == (scheme == "dark")
    show_banners(page)
    assert contrast(page, "#pref-message .notice-error p") >= 4.5
    assert contrast(page, "#pref-guideline li") >= 4.5
    context.close()


def test_the_toggle_switches_the_theme_and_remembers_it(page: Page, studio):
    dark = "document.body.classList.contains('dark')"
    assert page.evaluate(dark) is False
    page.click("#theme-toggle")
    page.wait_for_function(dark)
    show_banners(page)
    assert contrast(page, "#pref-message .notice-error p") >= 4.5
    page.reload()
    expect(page.locator("#principle-table")).to_contain_text("physical-harm")
    page.wait_for_function(dark)
    page.click("#theme-toggle")
    page.wait_for_function(f"!({dark})")
    page.reload()
    expect(page.locator("#principle-table")).to_contain_text("physical-harm")
    assert page.evaluate(dark) is False


def test_the_readme_picture_is_the_studio_as_it_opens(page: Page, tmp_path):
    """`make screenshot` writes docs/studio.png (SCREENSHOT_DIR) from here; other runs write
    it to a temporary folder, so the suite never changes the repository."""
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    page.click("#start-dismiss")
    expect(page.locator("#start-here")).to_be_hidden()
    page.locator("#principle-table").get_by_text("physical-harm", exact=True).first.click()
    expect(page.locator("#principle-editing")).to_contain_text("physical-harm")
    page.wait_for_timeout(1000)  # let the editor's fields settle before the picture
    taken = folder / "studio.partial.png"
    page.screenshot(path=taken, clip={"x": 0, "y": 0, "width": 1400, "height": 1000})
    data = taken.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    os.replace(taken, folder / "studio.png")
