// The console's page. Every text that comes from the server is set as text, never as
// markup. The session cookie is out of this script's reach; the CSRF token is read from
// its own cookie and sent with every state change.

const $ = (id) => document.getElementById(id);

function csrfToken() {
  const pair = document.cookie.split("; ").find((c) => c.startsWith("helpline_csrf="));
  return pair ? pair.slice("helpline_csrf=".length) : "";
}

function show(who) {
  $("sign-in").hidden = who !== null;
  $("signed-in").hidden = who === null;
  $("sign-out").hidden = who === null;
  $("who").hidden = who === null;
  if (who !== null) {
    $("who").textContent = `${who.name || who.agent} (${who.role})`;
  }
}

async function current() {
  const response = await fetch("/api/session", { credentials: "same-origin" });
  return response.ok ? response.json() : null;
}

$("sign-in").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("sign-in-error").textContent = "";
  const response = await fetch("/api/sign-in", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ agent: $("agent").value, password: $("password").value }),
  });
  $("password").value = "";
  if (response.ok) {
    show(await response.json());
  } else {
    const problem = await response.json().catch(() => ({ error: response.statusText }));
    $("sign-in-error").textContent = problem.error;
  }
});

$("sign-out").addEventListener("click", async () => {
  await fetch("/api/sign-out", {
    method: "POST",
    credentials: "same-origin",
    headers: { "x-csrf-token": csrfToken() },
  });
  show(null);
});

show(await current());
