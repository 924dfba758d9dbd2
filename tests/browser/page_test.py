"""The movies page in a real headless Chromium, driven as a person would.

    python3 tests/browser/page_test.py BASE_URL SCREENSHOT_DIR

Registers, adds a movie, logs out, registers a second user, rates the
movie (average 4.0), is refused a second rating, reads My activity, logs
out another session from Sessions, changes the password (which ends the
other sessions), logs out, and logs in with the new password on a phone. Checks that the token never reaches a cookie or localStorage, that the
page's Content-Security-Policy blocks inline script and reported nothing,
and that a phone-sized window has no horizontal scroll. Saves a screenshot
after each step in SCREENSHOT_DIR.
"""

import json
import sys
import time
import urllib.error
import urllib.request
import uuid

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support import expected_conditions as ec
from selenium.webdriver.support.ui import Select, WebDriverWait

BASE, SHOTS = sys.argv[1], sys.argv[2]
RUN = uuid.uuid4().hex[:6]
step = 0


def shot(driver, name):
    global step
    step += 1
    driver.save_screenshot(f"{SHOTS}/{step:02d}-{name}.png")


def browser(width=1100, height=900):
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--disable-gpu"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait(driver, condition, what, timeout=10):
    try:
        return WebDriverWait(driver, timeout).until(condition)
    except Exception:
        shot(driver, "FAILED")
        raise AssertionError(f"timed out waiting for {what}; page text:\n{driver.find_element(By.TAG_NAME, 'body').text}")


def text_shown(driver, element_id, text):
    return wait(driver, ec.text_to_be_present_in_element((By.ID, element_id), text),
                f"{text!r} in #{element_id}")


def fill(driver, form, values):
    for name, value in values.items():
        field = driver.find_element(By.ID, f"{form}-{name}")
        field.clear()
        field.send_keys(value)


def by_label(driver, label_text):
    """The control a visible <label> names: labels are how people find fields."""
    label = driver.find_element(By.XPATH, f"//label[normalize-space()='{label_text}' and not(ancestor::*[@hidden])]")
    return driver.find_element(By.ID, label.get_attribute("for"))


def register(driver, name):
    fill(driver, "register", {"username": name, "email": f"{name}@example.com", "password": "correct-horse-1"})
    driver.find_element(By.XPATH, "//button[normalize-space()='Register']").click()
    text_shown(driver, "username", name)
    assert not driver.find_element(By.ID, "register-form").is_displayed(), "sign-in forms still shown"
    assert driver.find_element(By.ID, "movie-form").is_displayed()


def log_out(driver):
    driver.find_element(By.XPATH, "//button[normalize-space()='Log out']").click()
    wait(driver, ec.visibility_of_element_located((By.ID, "register-form")), "the sign-in forms")
    assert not driver.find_element(By.ID, "movies").is_displayed(), "movies shown signed out"


def call(method, path, body=None, token=None, agent="page-test/1"):
    """The REST API as another client of the same user would call it."""
    headers = {"Content-Type": "application/json", "User-Agent": agent}
    if token:
        headers["Authorization"] = f"Token {token}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            text = r.read()
            return r.status, json.loads(text) if text else None
    except urllib.error.HTTPError as e:
        return e.code, None


def shown_titles(driver):
    # In one script: the rows may be rebuilt between two element reads.
    return driver.execute_script(
        "return [...document.querySelectorAll('#movies tr.movie td.title')].map(td => td.textContent)")


def rate(driver, title, rating):
    """Chooses `rating` in the row of `title` and presses Rate. The list is
    rebuilt now and then (a reload, the 5 s refresh): a row replaced under
    us is found again, and nothing was pressed in the stale one."""
    for _ in range(10):
        try:
            row = movie_row(driver, title)
            Select(row.find_element(By.TAG_NAME, "select")).select_by_value(str(rating))
            row.find_element(By.XPATH, ".//button[normalize-space()='Rate']").click()
            return
        except StaleElementReferenceException:
            time.sleep(0.1)
    raise AssertionError(f"the row of {title} kept being rebuilt")


def session_rows(driver):
    return driver.find_elements(By.CSS_SELECTOR, "#sessions tbody tr")


def movie_row(driver, title):
    return wait(driver, ec.presence_of_element_located(
        (By.XPATH, f"//tr[@class='movie'][td[@class='title' and normalize-space()='{title}']]")),
        f"the row of {title}")


def token_of(driver):
    return driver.execute_script("return sessionStorage.getItem('movies.token')")


def main():
    driver = browser()
    try:
        driver.get(BASE + "/")
        assert driver.title == "Movies", driver.title
        wait(driver, ec.visibility_of_element_located((By.ID, "login-form")), "the page")
        time.sleep(0.5)
        errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
        assert not errors, f"console errors on load: {errors}"
        shot(driver, "start")

        # Field errors from the API, next to their fields.
        fill(driver, "register", {"username": "bad name!", "email": "nope", "password": "x"})
        driver.find_element(By.XPATH, "//button[normalize-space()='Register']").click()
        text_shown(driver, "register-email-error", "Enter a valid email address.")
        assert driver.find_element(By.ID, "register-username-error").text, "no username error shown"
        shot(driver, "field-errors")

        adder, rater = f"ann{RUN}", f"bob{RUN}"
        title = f"Heat {RUN}"
        register(driver, adder)
        title_field, director_field = by_label(driver, "Title"), by_label(driver, "Director")
        title_field.send_keys(title)
        director_field.send_keys("Michael Mann")
        driver.find_element(By.XPATH, "//button[normalize-space()='Add movie']").click()
        text_shown(driver, "message", f"Added {title}")
        movie_row(driver, title)
        other_title = f"Alpha {RUN}"
        title_field.send_keys(other_title)
        director_field.send_keys("Someone Else")
        driver.find_element(By.XPATH, "//button[normalize-space()='Add movie']").click()
        text_shown(driver, "message", f"Added {other_title}")
        shot(driver, "movie-added")

        token = driver.execute_script("return sessionStorage.getItem('movies.token')")
        assert token and len(token) == 64, "the token is in sessionStorage"
        assert driver.execute_script("return localStorage.length") == 0, "nothing in localStorage"
        assert not driver.get_cookies(), f"no cookies: {driver.get_cookies()}"
        log_out(driver)

        register(driver, rater)
        rate(driver, title, 4)
        text_shown(driver, "message", f"You rated {title}: 4")
        wait(driver, lambda d: movie_row(d, title).find_element(By.CLASS_NAME, "average").text == "4.0",
             "the average 4.0")
        assert movie_row(driver, title).find_element(By.CLASS_NAME, "count").text == "1"
        shot(driver, "rated")

        # Search and sort: the search box narrows, the menu orders.
        search = by_label(driver, "Search titles and directors")
        search.send_keys("héat")
        wait(driver, lambda d: shown_titles(d) == [title], "only the searched movie")
        search.clear()
        search.send_keys("zzzz-no-such-movie")
        wait(driver, lambda d: d.find_element(By.ID, "movies-empty").is_displayed(), "no movie found")
        search.clear()
        search.send_keys(RUN)
        sort = Select(by_label(driver, "Sort by"))
        sort.select_by_visible_text("Title")
        wait(driver, lambda d: shown_titles(d) == [other_title, title], "the titles in order")
        sort.select_by_visible_text("Most rated")
        wait(driver, lambda d: shown_titles(d) == [title, other_title], "the rated movie first")
        shot(driver, "sorted")
        search.clear()
        search.send_keys(Keys.ENTER)
        wait(driver, lambda d: shown_titles(d) == [title, other_title], "both movies again")

        # Rating twice is refused, and the page says so.
        rate(driver, title, 5)
        text_shown(driver, "message", "You cant rate it")
        assert "bad" in driver.find_element(By.ID, "message").get_attribute("class")
        shot(driver, "refused")

        # My activity, reached by keyboard alone.
        link = driver.find_element(By.LINK_TEXT, "My activity")
        link.send_keys(Keys.ENTER)
        wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#activity li")) >= 3, "the activity")
        assert not driver.find_element(By.ID, "movies").is_displayed(), "movies beside the activity"
        kinds = [li.get_attribute("class") for li in driver.find_elements(By.CSS_SELECTOR, "#activity li")]
        assert kinds[0] == "activity rated", kinds
        assert "activity registered" in kinds, kinds
        text = driver.find_element(By.ID, "activity").text
        assert f"Rated a movie: {title} (4)" in text, text
        assert "Added a movie" not in text, "the other user's doings"
        shot(driver, "activity")

        # The policy forbids inline script, and nothing on the page broke it.
        driver.execute_script("""
            window.inlineRan = false;
            const s = document.createElement('script');
            s.textContent = 'window.inlineRan = true';
            document.body.appendChild(s);""")
        time.sleep(0.2)
        assert driver.execute_script("return window.inlineRan") is False, "inline script ran"
        logs = [e["message"] for e in driver.get_log("browser")]
        violations = [m for m in logs if "Content Security Policy" in m]
        assert len(violations) == 1, f"only the planted script is refused: {violations}"

        # Sessions: a second one, logged in elsewhere, is listed with its
        # name and client, and logged out from here.
        status, phone_login = call("POST", "/api/auth/login", {
            "username": rater, "password": "correct-horse-1", "name": "Phone"}, agent="PhoneApp/2.1")
        assert status == 200, status
        driver.find_element(By.LINK_TEXT, "Sessions").click()
        wait(driver, lambda d: len(session_rows(d)) == 2, "two sessions")
        other = driver.find_element(By.XPATH, "//tr[contains(@class,'session')][td[@class='name' and normalize-space()='Phone']]")
        assert "PhoneApp/2.1" in other.text, other.text
        assert "this page" in driver.find_element(By.CSS_SELECTOR, "tr.session.current").text
        shot(driver, "sessions")
        other.find_element(By.XPATH, ".//button[normalize-space()='Log out']").click()
        text_shown(driver, "message", "That session is logged out")
        wait(driver, lambda d: len(session_rows(d)) == 1, "one session left")
        assert call("GET", "/api/auth/me", token=phone_login["token"])[0] == 401, "the phone's token still works"
        assert call("GET", "/api/auth/me", token=token_of(driver))[0] == 200

        # Change password: a wrong old one is refused beside its field; the
        # right one ends every other session and keeps this one.
        status, laptop = call("POST", "/api/auth/login", {"username": rater, "password": "correct-horse-1"})
        assert status == 200, status
        fill(driver, "password", {"old_password": "not-my-password", "new_password": "correct-horse-2"})
        driver.find_element(By.XPATH, "//button[normalize-space()='Change password']").click()
        text_shown(driver, "password-non_field_errors-error", "Incorrect Credentials")
        fill(driver, "password", {"old_password": "correct-horse-1", "new_password": "correct-horse-2"})
        driver.find_element(By.XPATH, "//button[normalize-space()='Change password']").click()
        text_shown(driver, "message", "Password changed")
        wait(driver, lambda d: len(session_rows(d)) == 1, "only this session")
        assert call("GET", "/api/auth/me", token=laptop["token"])[0] == 401, "another session survived"
        assert call("GET", "/api/auth/me", token=token_of(driver))[0] == 200, "this session was ended"
        shot(driver, "password-changed")

        # My activity shows the security log, with where from.
        driver.find_element(By.LINK_TEXT, "My activity").click()
        text_shown(driver, "activity", "Password changed")
        text = driver.find_element(By.ID, "activity").text
        assert "A wrong password was given" in text and "A session was logged out" in text, text
        assert "(PhoneApp/2.1)" in text, text

        driver.find_element(By.LINK_TEXT, "Movies").click()
        movie_row(driver, title)
        log_out(driver)
        shot(driver, "logged-out")
    finally:
        driver.quit()

    # A phone-sized screen: everything fits the width.
    phone = browser(390, 844)
    try:
        phone.get(BASE + "/")
        wait(phone, ec.visibility_of_element_located((By.ID, "login-form")), "the page")
        fill(phone, "login", {"username": rater, "password": "correct-horse-2"})
        phone.find_element(By.XPATH, "//button[normalize-space()='Log in']").click()
        text_shown(phone, "username", rater)
        movie_row(phone, title)
        overflow = phone.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 0, f"{overflow}px of horizontal scroll on a phone"
        unnamed = phone.execute_script("""
            return [...document.querySelectorAll('button, input, select, a')]
              .filter(e => e.offsetParent !== null)
              .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                           && !e.textContent.trim())
              .map(e => e.outerHTML)""")
        assert not unnamed, f"controls without an accessible name: {unnamed}"
        shot(phone, "phone")
    finally:
        phone.quit()
    print(f"browser test passed; screenshots in {SHOTS}")


if __name__ == "__main__":
    main()
