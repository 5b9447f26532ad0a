"""Check a `leaderboard --html` page in a real headless browser (a manual step; CI has none).

    python -m benchmark leaderboard RESULTS_DIR --html site/
    python bench/check_leaderboard_html.py site/index.html --screenshot site.png

Needs Chromium and, for the interactive checks, selenium with chromedriver, installed OUTSIDE
partbench's environment (e.g. Debian: `apt-get install chromium chromium-driver`, then
`python3 -m venv /tmp/sel && /tmp/sel/bin/pip install selenium` and run this script with
/tmp/sel/bin/python; it imports nothing from partbench). With selenium it loads the page, fails
on any JavaScript error or image that did not decode, clicks the "accuracy (%)" header of each
table with 2+ rows and checks the rows come back sorted both ways (best first, then ascending), then saves a full-page
screenshot. Without selenium it only takes the screenshot with `chromium --headless`.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path


def _accuracies(table) -> list[float]:
    from selenium.webdriver.common.by import By

    headers = [th.text.strip() for th in table.find_elements(By.CSS_SELECTOR, "thead th")]
    column = headers.index("accuracy (%)")
    return [
        float(row.find_elements(By.TAG_NAME, "td")[column].get_attribute("data-sort"))
        for row in table.find_elements(By.CSS_SELECTOR, "tbody tr")
    ]


def check_with_selenium(page: Path, screenshot: Path, width: int) -> list[str]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={width},1000"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(
        options=options, service=Service(shutil.which("chromedriver") or "chromedriver")
    )
    problems = []
    try:
        driver.get(page.resolve().as_uri())
        broken = driver.execute_script(
            "return Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
            ".map(i => i.alt)"
        )
        problems += [f"image did not load: {alt}" for alt in broken]
        tables = driver.find_elements(By.CSS_SELECTOR, "table.sortable")
        if not tables:
            problems.append("no sortable table on the page")
        for number, table in enumerate(tables, start=1):
            values = _accuracies(table)
            if len(values) < 2:
                continue
            header = [
                th
                for th in table.find_elements(By.CSS_SELECTOR, "thead th")
                if th.text.strip().startswith("accuracy")
            ][0]
            header.click()  # the first click puts the best first
            if _accuracies(table) != sorted(values, reverse=True):
                problems.append(f"table {number}: not descending after one click")
            if header.get_attribute("aria-sort") != "descending":
                problems.append(f"table {number}: header does not show the sort direction")
            header.click()
            if _accuracies(table) != sorted(values):
                problems.append(f"table {number}: not ascending after two clicks")
            if header.get_attribute("aria-sort") != "ascending":
                problems.append(f"table {number}: header does not show the sort direction")
        errors = [
            entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"
        ]
        problems += [f"browser console: {message}" for message in errors]
        driver.get(page.resolve().as_uri())  # the screenshot shows the page as it opens
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, height + 200)  # + the window's own bars
        driver.execute_script("window.scrollTo(0, 0)")
        driver.save_screenshot(str(screenshot))
    finally:
        driver.quit()
    return problems


def screenshot_only(page: Path, screenshot: Path, width: int) -> list[str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return ["no chromium on PATH (Debian: apt-get install chromium)"]
    subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--window-size={width},4000",
            f"--screenshot={screenshot.resolve()}",
            page.resolve().as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path, help="the index.html that leaderboard --html wrote")
    parser.add_argument("--screenshot", type=Path, default=Path("leaderboard.png"))
    parser.add_argument("--width", type=int, default=1400)
    args = parser.parse_args()
    if not args.page.is_file():
        print(f"{args.page}: no such page; write one with leaderboard --html DIR")
        return 2
    if (
        importlib.util.find_spec("selenium") is None
    ):  # optional: only the interactive checks need it
        print("selenium not installed: taking a screenshot only, no interactive checks")
        problems = screenshot_only(args.page, args.screenshot, args.width)
    else:
        problems = check_with_selenium(args.page, args.screenshot, args.width)
    for problem in problems:
        print(f"FAIL {problem}")
    print(f"screenshot: {args.screenshot}" if not problems else f"{len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
