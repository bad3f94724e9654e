"""``cbm grafana``: publish the datasource, folder and dashboards to Grafana."""
