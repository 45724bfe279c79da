// The review page's only script: the target picker, and the search box (debounced, results from /search).
"use strict";
const DEBOUNCE_MS = 250;

function watchSearch(input) {
  const results = input.closest("section").querySelector(".results");
  let timer = null, asked = 0;
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++asked;
      const params = new URLSearchParams({ontology: input.dataset.ontology, term: input.dataset.term,
                                          view: input.dataset.view, q: input.value});
      const response = await fetch("/search?" + params.toString(), {credentials: "same-origin"});
      if (mine === asked) {  // an older, slower answer never replaces a newer one
        results.innerHTML = await response.text();  // server-rendered, every value escaped there
      }
    }, DEBOUNCE_MS);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("input.search").forEach(watchSearch);
  const picker = document.getElementById("target-select");
  if (picker) {
    picker.addEventListener("change", () => { window.location = "/?" + picker.value; });
  }
});
