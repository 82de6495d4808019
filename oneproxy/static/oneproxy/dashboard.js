// Draws the dashboard's four charts from the JSON the page carries
// (#dashboard-data, built by oneproxy/dashboard.py) with the vendored Chart.js.
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("dashboard-data").textContent);
  var palette = ["#417690", "#e07b39", "#2e9e4f", "#b84592", "#e0a800", "#5c6bc0", "#8d6e63", "#00897b", "#9e9e9e"];
  var style = getComputedStyle(document.documentElement);
  var fg = style.getPropertyValue("--body-quiet-color").trim() || "#666";
  var grid = style.getPropertyValue("--hairline-color").trim() || "#e8e8e8";
  Chart.defaults.color = fg;
  Chart.defaults.borderColor = grid;
  Chart.defaults.animation = false;

  function datasets(measure, line) {
    return data.series.map(function (s, i) {
      var colour = palette[i % palette.length];
      return {
        label: s.name,
        data: s[measure],
        backgroundColor: colour,
        borderColor: colour,
        borderWidth: line ? 2 : 0,
        pointRadius: line ? 2 : 0,
        spanGaps: true,
      };
    });
  }

  // Spend is in USD and small: at most three significant digits, never 1.2E-5.
  function usd(value) {
    return "$" + Number(value).toLocaleString("en", { maximumSignificantDigits: 3 });
  }

  function draw(measure, line) {
    var canvas = document.getElementById("chart-" + measure);
    if (!canvas) return;
    new Chart(canvas, {
      type: line ? "line" : "bar",
      data: { labels: data.labels, datasets: datasets(measure, line) },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: "index", intersect: false },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          title: { display: data.series.length === 0, text: data.empty },
        },
        scales: {
          x: { stacked: !line, ticks: { maxRotation: 0, autoSkip: true, maxTicksLimit: 12 } },
          y: {
            stacked: !line,
            beginAtZero: true,
            suggestedMax: line ? 100 : undefined,
            ticks: measure === "spend" ? { callback: usd } : {},
          },
        },
      },
    });
  }

  draw("requests", false);
  draw("tokens", false);
  draw("spend", false);
  draw("error_rate", true);
})();
