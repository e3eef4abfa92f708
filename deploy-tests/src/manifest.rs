//! Rendered manifests: splitting `helm template` output into documents,
//! and the deserialize/serialize round trip through the k8s-openapi type of
//! each kind. The type drops fields the API does not know, so the round
//! trip exposes a typo or a field at the wrong level of nesting.

use anyhow::{bail, Context, Result};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One rendered Kubernetes object.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub kind: String,
    pub name: String,
    /// The whole object as parsed from YAML.
    pub value: Value,
}

impl Manifest {
    /// Converts the object into its k8s-openapi type.
    pub fn to_typed<T: DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_value(self.value.clone())
            .with_context(|| format!("{} {} does not parse", self.kind, self.name))
    }
}

/// Splits `helm template` output into objects, skipping empty documents.
pub fn parse(rendered: &str) -> Result<Vec<Manifest>> {
    let mut manifests = Vec::new();
    for document in serde_yaml::Deserializer::from_str(rendered) {
        let value = Value::deserialize(document).context("a rendered document is not YAML")?;
        if value.is_null() {
            continue;
        }

        let field = |name: &str| {
            value
                .pointer(name)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .with_context(|| format!("a rendered document has no {name}: {value}"))
        };
        manifests.push(Manifest {
            kind: field("/kind")?,
            name: field("/metadata/name")?,
            value: value.clone(),
        });
    }
    Ok(manifests)
}

/// Passes the object through its k8s-openapi type and back, and returns
/// every difference from the original as `path: what changed`. Fails for a
/// kind without a type here; custom resources have none in k8s-openapi.
pub fn round_trip(manifest: &Manifest) -> Result<Vec<String>> {
    match manifest.kind.as_str() {
        "ConfigMap" => round_trip_as::<ConfigMap>(manifest),
        "Ingress" => round_trip_as::<Ingress>(manifest),
        "PodDisruptionBudget" => round_trip_as::<PodDisruptionBudget>(manifest),
        "Secret" => round_trip_as::<Secret>(manifest),
        "Service" => round_trip_as::<Service>(manifest),
        "ServiceAccount" => round_trip_as::<ServiceAccount>(manifest),
        "StatefulSet" => round_trip_as::<StatefulSet>(manifest),
        other => bail!(
            "no k8s-openapi type for kind {other} ({}); add it to manifest::round_trip",
            manifest.name
        ),
    }
}

fn round_trip_as<T: DeserializeOwned + Serialize>(manifest: &Manifest) -> Result<Vec<String>> {
    let typed: T = manifest.to_typed()?;
    let back = serde_json::to_value(&typed)?;
    let mut differences = Vec::new();
    diff("", &manifest.value, &back, &mut differences);
    Ok(differences)
}

/// Records where `after` differs from `before`, by JSON path.
pub fn diff(path: &str, before: &Value, after: &Value, differences: &mut Vec<String>) {
    match (before, after) {
        (Value::Object(old), Value::Object(new)) => {
            for (key, old_value) in old {
                let child = format!("{path}.{key}");
                match new.get(key) {
                    Some(new_value) => diff(&child, old_value, new_value, differences),
                    None => differences.push(format!(
                        "{child}: dropped by the API type (unknown field or wrong nesting): {old_value}"
                    )),
                }
            }
            for (key, new_value) in new {
                if !old.contains_key(key) {
                    differences.push(format!("{path}.{key}: added by the API type: {new_value}"));
                }
            }
        }
        (Value::Array(old), Value::Array(new)) if old.len() == new.len() => {
            for (index, (old_item, new_item)) in old.iter().zip(new).enumerate() {
                diff(&format!("{path}[{index}]"), old_item, new_item, differences);
            }
        }
        _ if before == after => {}
        _ => differences.push(format!("{path}: {before} became {after}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(yaml: &str) -> Manifest {
        parse(yaml).unwrap().remove(0)
    }

    #[test]
    fn round_trip_keeps_valid_fields() {
        let service = manifest(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n    - name: grpc\n      port: 7443\n      targetPort: grpc\n",
        );
        assert_eq!(round_trip(&service).unwrap(), Vec::<String>::new());
    }

    #[test]
    fn round_trip_reports_misspelled_field() {
        let service = manifest(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  prots:\n    - port: 7443\n",
        );
        let differences = round_trip(&service).unwrap();
        assert_eq!(differences.len(), 1, "{differences:?}");
        assert!(
            differences[0].starts_with(".spec.prots: dropped"),
            "{differences:?}"
        );
    }

    #[test]
    fn round_trip_reports_wrong_nesting() {
        // runAsNonRoot belongs under securityContext, not the container.
        let statefulset = manifest(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: s\nspec:\n  selector: {}\n  serviceName: s\n  template:\n    spec:\n      containers:\n        - name: c\n          runAsNonRoot: true\n",
        );
        let differences = round_trip(&statefulset).unwrap();
        assert_eq!(differences.len(), 1, "{differences:?}");
        assert!(
            differences[0].starts_with(".spec.template.spec.containers[0].runAsNonRoot: dropped"),
            "{differences:?}"
        );
    }

    #[test]
    fn round_trip_rejects_wrong_type() {
        let service = manifest(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n    - port: seven\n",
        );
        assert!(round_trip(&service).is_err());
    }

    #[test]
    fn round_trip_rejects_unknown_kind() {
        let monitor = manifest(
            "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata:\n  name: m\n",
        );
        assert!(round_trip(&monitor).is_err());
    }

    #[test]
    fn parse_skips_empty_documents() {
        let manifests = parse(
            "---\n# comment only\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n",
        )
        .unwrap();
        assert_eq!(manifests.len(), 1);
        assert_eq!(manifests[0].kind, "ConfigMap");
        assert_eq!(manifests[0].name, "c");
    }
}
