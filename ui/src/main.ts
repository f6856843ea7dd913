// Starts the UI: the tenant settings, the views, and routing on the URL's hash.

class App {
  bar!: QueryBar;
  flame!: FlameView;
  diff!: DiffView;
  anomalies!: AnomaliesView;
  sql!: SqlView;

  start(): void {
    this.bar = new QueryBar();
    this.flame = new FlameView(this.bar);
    this.diff = new DiffView(this.bar);
    this.anomalies = new AnomaliesView(this.bar);
    this.sql = new SqlView();

    const tenant = byId<HTMLInputElement>("tenant");
    const token = byId<HTMLInputElement>("token");
    tenant.value = auth.tenant;
    token.value = auth.token;
    byId("tenant-form").addEventListener("submit", (ev) => {
      ev.preventDefault();
      auth.save(tenant.value, token.value);
      this.show();
    });

    // Nav links keep the selection (type, service, filters, range) across views.
    for (const a of document.querySelectorAll<HTMLAnchorElement>("nav a[data-view]")) {
      a.addEventListener("click", (ev) => {
        ev.preventDefault();
        const keep = new URLSearchParams();
        const p = currentRoute().params;
        for (const k of ["type", "service", "m", "from", "until"]) for (const v of p.getAll(k)) keep.append(k, v);
        navigate(a.dataset.view as ViewName, keep);
      });
    }
    window.addEventListener("hashchange", () => this.show());
    this.show();
  }

  show(): void {
    const { view, params } = currentRoute();
    for (const v of VIEWS) {
      byId(`view-${v}`).hidden = v !== view;
      document.querySelector(`nav a[data-view="${v}"]`)?.classList.toggle("active", v === view);
    }
    byId("query-form").hidden = view === "sql";
    switch (view) {
      case "flame":
        void this.flame.show(params);
        break;
      case "diff":
        void this.diff.show(params);
        break;
      case "anomalies":
        void this.anomalies.show(params);
        break;
      case "sql":
        this.sql.show();
        break;
    }
  }
}

const app = new App();
document.addEventListener("DOMContentLoaded", () => app.start());
