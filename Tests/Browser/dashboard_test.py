#!/usr/bin/env python3
"""The dashboard in a real browser: headless Chromium (Debian's chromium + chromium-driver)
driven by Selenium, against a running control plane with two dynamic sidecars (web calling
payments). Run by DashboardBrowserTests (Tests/MeshIntegrationTests), which starts the mesh and
passes its URL, admin token file, the control-plane binary and data dir for a CLI `apply`.

Checks: every page without a session lands on sign-in; a wrong token is refused, the right one
lands on the overview listing both services with healthy/total instances; the proxies page
shows both proxies at the current version and, after a CLI apply, the new version within 2 s
with no reload; the topology has both services and the edge web -> payments; the keyboard
reaches the skip link and the navigation; no page scrolls sideways at 390 px; no console
errors; sign-out ends the session. Saves a screenshot of every page at 1280x800 and 390x844.

Exit status 0 when every check passed; 1 with the failed check on stderr; 77 when no Chromium.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

try:
    from selenium import webdriver
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
except ImportError:
    print("selenium is not installed: run scripts/install-deps.sh", file=sys.stderr)
    sys.exit(1)

SIZES = [(1280, 800), (390, 844)]
PAGES = ["overview", "proxies", "topology", "resources", "service-payments", "service-web"]


def page_path(page):
    if page == "overview":
        return "/ui/"
    if page.startswith("service-"):
        return "/ui/services/" + page[len("service-"):]
    return "/ui/" + page


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True, help="https://127.0.0.1:PORT of the control plane")
    parser.add_argument("--token-file", required=True)
    parser.add_argument("--cli", required=True, help="the control-plane binary")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--screenshots", required=True)
    args = parser.parse_args()

    chromium, driver_path = find_chromium(), shutil.which("chromedriver")
    if not chromium or not driver_path:
        print("no chromium or chromedriver on PATH (apt-get install chromium chromium-driver)", file=sys.stderr)
        return 77
    token = open(args.token_file).read().strip()
    os.makedirs(args.screenshots, exist_ok=True)

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     # The control plane's certificate comes from the mesh CA, which this test
                     # browser does not trust; only this throwaway profile skips the check.
                     "--ignore-certificate-errors", "--window-size=1280,800", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(20)
    base = args.url.rstrip("/")
    passed = []

    def ok(name):
        passed.append(name)
        print("ok:", name, flush=True)

    def wait(condition, seconds, message):
        """Polls `condition` every 50 ms for at most `seconds`; `message` is a function, called on failure."""
        try:
            return WebDriverWait(driver, seconds, poll_frequency=0.05).until(lambda d: condition())
        except TimeoutException:
            raise Failure(message() if callable(message) else message)

    def console_errors():
        return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]

    def expect_no_console_errors(where):
        errors = console_errors()
        check(not errors, f"console errors on {where}: {errors}")

    def text(selector):
        return driver.find_element(By.CSS_SELECTOR, selector).text

    try:
        # 1. Without a session every page lands on sign-in.
        for page in PAGES:
            driver.get(base + page_path(page))
            check(driver.current_url == base + "/ui/login", f"{page} without a session went to {driver.current_url}")
        ok("every page without a session redirects to sign-in")

        # 2. A wrong token is refused (the 401 of the form post is expected in the log).
        driver.find_element(By.ID, "token").send_keys("not-the-token" + Keys.ENTER)
        wait(lambda: driver.find_elements(By.ID, "login-error"), 10, "no error shown for a wrong token")
        check(driver.current_url == base + "/ui/login", f"a wrong token went to {driver.current_url}")
        check(not driver.get_cookies(), f"a wrong token set cookies: {driver.get_cookies()}")
        console_errors()  # drop the expected 401
        ok("a wrong token is refused")

        # 3. The right token lands on the overview: both services, healthy/total instances.
        driver.find_element(By.ID, "token").send_keys(token + Keys.ENTER)
        wait(lambda: driver.current_url == base + "/ui/", 10, f"sign-in went to {driver.current_url}")
        cookie = driver.get_cookie("mesh_session")
        check(cookie and cookie.get("httpOnly") and cookie.get("secure") and cookie.get("sameSite") == "Strict",
              f"session cookie flags: {cookie}")
        rows = {}
        for row in driver.find_elements(By.CSS_SELECTOR, "main table tbody tr"):
            name = row.find_element(By.CSS_SELECTOR, "th").text
            rows[name] = row.find_element(By.CSS_SELECTOR, "[data-testid=instances]").text
        check(rows.get("web") == "1/1" and rows.get("payments") == "1/1", f"overview services: {rows}")
        check("1 of 1 healthy" in text("main table"), "health is not in words on the overview")
        expect_no_console_errors("the overview")
        ok("the right token lands on the overview listing web and payments with 1/1 instances")

        # 4. Keyboard: the first Tab reaches the skip link, then the navigation.
        driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
        check(driver.switch_to.active_element.get_attribute("class") == "skip", "Tab does not reach the skip link first")
        driver.switch_to.active_element.send_keys(Keys.TAB)
        check(driver.switch_to.active_element.get_attribute("href").endswith("/ui/"), "Tab does not reach the navigation")
        ok("keyboard: skip link, then navigation")

        # 5. Proxies: both at the current version; an apply shows within 2 s without a reload.
        driver.get(base + "/ui/proxies")

        def versions():
            # Read in one script: the live page swaps <main>, so element handles go stale.
            return driver.execute_script(
                "var texts = function (s) { return Array.from(document.querySelectorAll(s), function (e) { return e.textContent; }); };"
                "return [texts('[data-testid=applied]'), texts('[data-testid=current]')];")

        def all_current(minimum=0):
            applied, current = versions()
            return (len(applied) == 2 and len(set(current)) == 1 and applied == current
                    and int(current[0]) > minimum)

        wait(all_current, 15, lambda: f"proxies not both at the current version: {versions()}")
        before = int(versions()[1][0])
        driver.execute_script("window.__meshNoReload = true;")
        started = time.monotonic()
        applied = subprocess.run(
            [args.cli, "apply", "-f", "-", "--data-dir", args.data_dir],
            input="kind: TrafficPolicy\nservice: payments\nconnectTimeout: 3s\n", text=True, capture_output=True)
        check(applied.returncode == 0, f"apply failed: {applied.stderr}")
        wait(lambda: all_current(before), 2.0 + (time.monotonic() - started),
             lambda: f"the new version did not show within 2 s of the apply: {versions()}")
        elapsed = time.monotonic() - started
        check(driver.execute_script("return window.__meshNoReload === true;"), "the proxies page reloaded")
        expect_no_console_errors("the proxies page")
        ok(f"proxies page: version {before} -> {versions()[1][0]} shown {elapsed:.2f} s after the apply, no reload")

        # 6. Topology: nodes for both services and the edge web -> payments.
        driver.get(base + "/ui/topology")
        check(driver.find_elements(By.CSS_SELECTOR, "svg [data-service=web]"), "no web node")
        check(driver.find_elements(By.CSS_SELECTOR, "svg [data-service=payments]"), "no payments node")
        check(driver.find_elements(By.CSS_SELECTOR, "svg g.edge[data-from=web][data-to=payments]"), "no edge web -> payments")
        expect_no_console_errors("the topology page")
        ok("topology: web and payments nodes, edge web -> payments")

        # 7. Every page at both sizes: no console error, nothing wider than the screen, a screenshot.
        for width, height in SIZES:
            # The viewport exactly (a window's size includes the browser's own bars); a phone
            # width as a mobile device, so the page's viewport meta applies.
            driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
                "width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600})
            for page in PAGES:
                driver.get(base + page_path(page))
                check(driver.find_elements(By.CSS_SELECTOR, "main h1"), f"{page}: no heading")
                overflow = driver.execute_script(
                    "return document.documentElement.scrollWidth - document.documentElement.clientWidth;")
                check(overflow <= 1, f"{page} at {width}x{height} scrolls sideways by {overflow}px")
                expect_no_console_errors(f"{page} at {width}x{height}")
                driver.save_screenshot(os.path.join(args.screenshots, f"{page}-{width}x{height}.png"))
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
        driver.get(base + "/ui/services/payments")
        check("TrafficPolicy payments" in text("main"), "the service page does not show its TrafficPolicy")
        check("connectTimeout: 3s" in text("main"), "the service page does not show the applied policy as YAML")
        ok(f"every page at {SIZES}: no console error, no sideways scroll, screenshots in {args.screenshots}")

        # 8. Sign-out ends the session.
        driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
        wait(lambda: driver.current_url == base + "/ui/login", 10, f"sign-out went to {driver.current_url}")
        driver.get(base + "/ui/proxies")
        check(driver.current_url == base + "/ui/login", "the session outlived sign-out")
        ok("sign-out ends the session")
    except Failure as failure:
        path = os.path.join(args.screenshots, "failure.png")
        driver.save_screenshot(path)
        print(f"FAILED: {failure} (after {len(passed)} checks; page {driver.current_url}, screenshot {path})",
              file=sys.stderr)
        return 1
    finally:
        driver.quit()
    print(f"dashboard browser checks: {len(passed)} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
