// erpsync dashboard: the links of one CRM record (GetConnectionsAndDisplayFields), at
// #/links/<CrmActorType>/<record id>. Loaded before app.js, whose router calls renderLinks().
"use strict";

const LINKS_AGENT = "/api/v1/Agents/ErpSync/GetConnectionsAndDisplayFields";
const LINKS_REFRESH_MS = 10000; // the linked actors' fields are read from the ERPs: not each second
let linksShown = { key: "", at: 0 };

function linksTarget(hash) {
  const m = hash.match(/^#\/links(?:\/([A-Za-z]+)\/(\d+))?$/);
  return m ? { type: m[1] || "Contact", id: m[2] ? Number(m[2]) : null } : null;
}

async function renderLinks(target) {
  $("links-type").value = target.type;
  if (target.id !== null && document.activeElement !== $("links-id")) $("links-id").value = target.id;
  const key = `${target.type}/${target.id}`;
  if (target.id === null) { $("links").replaceChildren(); $("links-empty").hidden = true; return; }
  if (linksShown.key === key && Date.now() - linksShown.at < LINKS_REFRESH_MS) return;
  const rows = await (await call("POST", LINKS_AGENT,
    { CrmActorType: target.type, EntityId: target.id })).json();
  linksShown = { key, at: Date.now() };
  $("links-title").textContent = `Links of ${target.type} ${target.id}`;
  $("links-empty").hidden = rows.length > 0;
  $("links").replaceChildren(...rows.map((c) => {
    const broken = c.LinkBroken;
    let state = "not linked";
    if (c.Connected) state = "linked";
    else if (broken) state = `broken by ${broken.BrokenBy} at ${fmtTime(broken.BrokenAt)}`;
    const actor = c.Connected ? `${c.ErpActorType} ${c.ErpKey}`
      : broken ? `(${broken.ErpActorType} ${broken.ErpKey})` : "";
    const fields = c.ReadError ? `not read: ${c.ReadError}` : c.Connected
      ? c.ErpFields.map((f) => `${f.FieldKey} = ${f.Value ?? "∅"}`).join(", ") : "";
    return h("tr", { "data-connection-id": c.ErpConnectionId },
      h("td", {}, `${c.ConnectionName} (${c.ErpConnectionId})`),
      h("td", {}, h("span", { class: `link-state l-${c.Connected ? "on" : broken ? "broken" : "off"}` }, state)),
      h("td", {}, actor),
      h("td", { class: c.ReadError ? "reason" : "" }, fields));
  }));
}

function linksSubmit(ev) {
  ev.preventDefault();
  const id = Number($("links-id").value);
  if (!Number.isSafeInteger(id) || id <= 0) { showError(new Error("A record id is a positive whole number.")); return; }
  linksShown = { key: "", at: 0 };
  location.hash = `#/links/${$("links-type").value}/${id}`;
}
