//! Portico's custom resources (`portico.dev`). The controller reads them next to Ingresses;
//! their types and generated YAML live here so the chart and the code never disagree.
