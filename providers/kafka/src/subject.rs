//! `topic` or `topic/key`: Kafka topic names cannot contain `/`, so the split is unambiguous.

#[derive(Debug, PartialEq, Eq)]
pub struct Subject<'a> {
    pub topic: &'a str,
    pub key: Option<&'a str>,
}

pub fn parse(subject: &str) -> Result<Subject<'_>, String> {
    let (topic, key) = match subject.split_once('/') {
        Some((t, k)) => (t, Some(k)),
        None => (subject, None),
    };
    let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if topic.is_empty() || topic.len() > 249 || !topic.chars().all(legal) {
        return Err(format!("`{topic}` is not a valid Kafka topic name"));
    }
    Ok(Subject {
        topic,
        key: key.filter(|k| !k.is_empty()),
    })
}

/// The subject a delivered record is given: the inverse of `parse`.
pub fn format(topic: &str, key: Option<&[u8]>) -> String {
    match key.and_then(|k| std::str::from_utf8(k).ok()) {
        Some(key) if !key.is_empty() => format!("{topic}/{key}"),
        _ => topic.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_topic_and_key() {
        assert_eq!(
            parse("patient").unwrap(),
            Subject {
                topic: "patient",
                key: None
            }
        );
        assert_eq!(
            parse("patient/abc/d").unwrap(),
            Subject {
                topic: "patient",
                key: Some("abc/d")
            }
        );
        assert!(parse("bad topic").is_err());
        assert!(parse("/k").is_err());
        assert_eq!(format("patient", Some(b"k1")), "patient/k1");
        assert_eq!(format("patient", None), "patient");
    }
}
