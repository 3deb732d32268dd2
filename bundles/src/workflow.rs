//! The state machines a template declares, read into graphs that a buyer can look at: each state
//! in order, the Lambda function a `Task` invokes (or the AWS service call it makes, and on which
//! of the template's resources), the transitions between states (next, choice rules, default,
//! catch) and the branches of `Parallel` and `Map` states.
//!
//! A definition comes from `Definition` (an object), or `DefinitionString` (a string, `Fn::Sub`
//! in either form, or `Fn::Join`), with `DefinitionSubstitutions`. Wherever the template wires a
//! resource into the definition — `${PriceFunction.Arn}` in a `Fn::Sub`, a substitution whose
//! value is a `Ref` or `Fn::GetAtt` — the graph names that resource's logical id. The input is the
//! vendor's: every loop terminates (states are visited once), nesting is bounded
//! ([`MAX_DEPTH`]), and so is the number of states drawn ([`MAX_STATES`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How deep `Parallel` and `Map` states may nest before the rest is left out of the graph.
pub const MAX_DEPTH: usize = 6;
/// How many states one state machine's graph holds at most, over all its branches.
pub const MAX_STATES: usize = 300;
/// The longest name or label kept; longer ones are cut.
const MAX_TEXT: usize = 120;

/// A state machine's graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateMachine {
    /// The resource's logical id.
    pub logical_id: String,
    /// Its states: the path along `Next` first, then the states choices, defaults and catches
    /// lead to, then any no run reaches.
    pub states: Vec<State>,
    /// Why the graph is partial or empty, when it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Its name.
    pub name: String,
    /// Its type (`Task`, `Choice`, `Parallel`, `Map`, `Pass`, `Wait`, `Succeed`, `Fail`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The logical id of the Lambda function a `Task` invokes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<String>,
    /// The service call a `Task` makes (`dynamodb:putItem`), when it is not a Lambda invoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The logical id of the resource that call is made on, when the template wires one in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Where a run goes from here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<Transition>,
    /// The branches of a `Parallel` state, or the one iterator of a `Map` state.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub branches: Vec<Vec<State>>,
    /// Whether a run may end here.
    #[serde(default)]
    pub end: bool,
}

/// A transition to another state of the same list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    /// The state it goes to.
    pub to: String,
    /// Why: absent for `Next`, a choice rule, `default`, or `catch ERRORS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

/// Every state machine in a parsed JSON template, sorted by logical id
/// ([`crate::template::TemplateSummary::parse`] is where templates are judged).
pub fn state_machines(template: &Value) -> Vec<StateMachine> {
    let Some(resources) = template.get("Resources").and_then(Value::as_object) else {
        return Vec::new();
    };
    let names: BTreeSet<&str> = resources.keys().map(String::as_str).collect();
    resources
        .iter()
        .filter(|(_, r)| {
            r.get("Type").and_then(Value::as_str) == Some("AWS::StepFunctions::StateMachine")
        })
        .map(|(id, r)| read_machine(id, r.get("Properties").unwrap_or(&Value::Null), &names))
        .collect()
}

fn read_machine(logical_id: &str, props: &Value, names: &BTreeSet<&str>) -> StateMachine {
    let mut wiring = Wiring::new(names);
    if let Some(subs) = props
        .get("DefinitionSubstitutions")
        .and_then(Value::as_object)
    {
        for (name, value) in subs {
            if let Some(target) = wiring.target_of(value) {
                wiring.placeholders.insert(name.clone(), target);
            }
        }
    }
    let definition = if let Some(object) = props.get("Definition") {
        Ok(wiring.with_placeholders(object))
    } else if let Some(text) = props.get("DefinitionString") {
        wiring
            .text_of(text)
            .ok_or("its DefinitionString is not a string, Fn::Sub or Fn::Join")
            .and_then(|text| {
                serde_json::from_str::<Value>(&text)
                    .map_err(|_| "its DefinitionString is not JSON once substituted")
            })
    } else if props.get("DefinitionS3Location").is_some() {
        Err("its definition is in S3 (DefinitionS3Location), outside the signed template")
    } else {
        Err("it has no definition")
    };
    let mut budget = MAX_STATES;
    let mut machine = StateMachine {
        logical_id: logical_id.to_owned(),
        states: Vec::new(),
        note: None,
    };
    match definition {
        Ok(def) => {
            let mut cut = None;
            machine.states = read_states(&def, &wiring, 0, &mut budget, &mut cut);
            if machine.states.is_empty() && cut.is_none() {
                cut = Some("its definition has no States");
            }
            machine.note = cut.map(str::to_owned);
        }
        Err(why) => machine.note = Some(why.to_owned()),
    }
    machine
}

/// How the template wires resources into a definition: `${Name}` placeholders that stand for
/// one of its resources.
struct Wiring<'a> {
    names: &'a BTreeSet<&'a str>,
    placeholders: BTreeMap<String, String>,
}

impl<'a> Wiring<'a> {
    fn new(names: &'a BTreeSet<&'a str>) -> Self {
        Self {
            names,
            placeholders: BTreeMap::new(),
        }
    }

    /// The resource an intrinsic (`Ref`, `Fn::GetAtt`, a `Fn::Sub` naming one) stands for.
    fn target_of(&self, value: &Value) -> Option<String> {
        let name = match value {
            Value::Object(map) if map.len() == 1 => match map.iter().next() {
                Some((k, Value::String(name))) if k == "Ref" => name.clone(),
                Some((k, Value::Array(parts))) if k == "Fn::GetAtt" => {
                    parts.first()?.as_str()?.to_owned()
                }
                Some((k, Value::String(dotted))) if k == "Fn::GetAtt" => {
                    dotted.split('.').next()?.to_owned()
                }
                Some((k, Value::String(text))) if k == "Fn::Sub" => {
                    return self.resource_in(text);
                }
                _ => return None,
            },
            Value::String(text) => return self.resource_in(text),
            _ => return None,
        };
        self.names.contains(name.as_str()).then_some(name)
    }

    /// The first resource a text names with `${Name}`, `${Name.Attr}` or a placeholder.
    fn resource_in(&self, text: &str) -> Option<String> {
        crate::template::sub_names(text)
            .into_iter()
            .find_map(|name| {
                if let Some(target) = self.placeholders.get(&name) {
                    Some(target.clone())
                } else {
                    self.names.contains(name.as_str()).then_some(name)
                }
            })
    }

    /// The definition text of a `DefinitionString`, with each intrinsic that stands for a resource
    /// written as `${LogicalId}` and `Fn::Sub` variables recorded as placeholders.
    fn text_of(&mut self, value: &Value) -> Option<String> {
        match value {
            Value::String(text) => Some(text.clone()),
            Value::Object(map) if map.len() == 1 => match map.iter().next()? {
                (k, Value::String(text)) if k == "Fn::Sub" => Some(text.clone()),
                (k, Value::Array(parts)) if k == "Fn::Sub" => {
                    let text = parts.first()?.as_str()?.to_owned();
                    if let Some(vars) = parts.get(1).and_then(Value::as_object) {
                        for (name, value) in vars {
                            if let Some(target) = self.target_of(value) {
                                self.placeholders.insert(name.clone(), target);
                            }
                        }
                    }
                    Some(text)
                }
                (k, Value::Array(parts)) if k == "Fn::Join" => {
                    let separator = parts.first()?.as_str()?;
                    let pieces = parts.get(1)?.as_array()?;
                    let mut out = Vec::with_capacity(pieces.len());
                    for piece in pieces {
                        out.push(match piece {
                            Value::String(s) => s.clone(),
                            other => match self.target_of(other) {
                                Some(target) => format!("${{{target}}}"),
                                None => "?".to_owned(),
                            },
                        });
                    }
                    Some(out.join(separator))
                }
                _ => None,
            },
            _ => None,
        }
    }

    /// A `Definition` object with every intrinsic that stands for a resource written as
    /// `${LogicalId}`, so it reads like a substituted `DefinitionString`.
    fn with_placeholders(&self, value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                if map.len() == 1
                    && map.keys().all(|k| k == "Ref" || k.starts_with("Fn::"))
                    && let Some(target) = self.target_of(value)
                {
                    return Value::String(format!("${{{target}}}"));
                }
                Value::Object(
                    map.iter()
                        .map(|(k, v)| (k.clone(), self.with_placeholders(v)))
                        .collect(),
                )
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| self.with_placeholders(v)).collect())
            }
            other => other.clone(),
        }
    }
}

fn short(text: &str) -> String {
    if text.chars().count() <= MAX_TEXT {
        text.to_owned()
    } else {
        let mut cut: String = text.chars().take(MAX_TEXT - 1).collect();
        cut.push('…');
        cut
    }
}

/// The states of a definition (or a branch), in the order a run meets them.
fn read_states(
    def: &Value,
    wiring: &Wiring<'_>,
    depth: usize,
    budget: &mut usize,
    cut: &mut Option<&'static str>,
) -> Vec<State> {
    let Some(states) = def.get("States").and_then(Value::as_object) else {
        return Vec::new();
    };
    let start = def
        .get("StartAt")
        .and_then(Value::as_str)
        .unwrap_or_default();
    // Depth first, `Next` before choices, default and catches: the path a run takes when all
    // goes well reads straight down, and the other paths follow it.
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    let mut stack = vec![start.to_owned()];
    while let Some(name) = stack.pop() {
        let Some(body) = states.get(&name) else {
            continue;
        };
        if !seen.insert(name.clone()) {
            continue;
        }
        for t in transitions(body).into_iter().rev() {
            stack.push(t.to);
        }
        order.push((name, body));
    }
    // States no run reaches are still the vendor's: show them after the others.
    for (name, body) in states {
        if !seen.contains(name) {
            order.push((name.clone(), body));
        }
    }
    let mut out = Vec::new();
    for (name, body) in order {
        if *budget == 0 {
            *cut = Some("it has more states than the graph draws");
            break;
        }
        *budget -= 1;
        out.push(read_state(&name, body, wiring, depth, budget, cut));
    }
    out
}

fn transitions(body: &Value) -> Vec<Transition> {
    let mut out = Vec::new();
    let mut push = |to: Option<&Value>, label: Option<String>| {
        if let Some(to) = to.and_then(Value::as_str) {
            out.push(Transition {
                to: short(to),
                label: label.map(|l| short(&l)),
            });
        }
    };
    push(body.get("Next"), None);
    for (i, rule) in body
        .get("Choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        push(rule.get("Next"), Some(choice_label(rule, i)));
    }
    push(body.get("Default"), Some("default".into()));
    for catch in body
        .get("Catch")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let errors: Vec<&str> = catch
            .get("ErrorEquals")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        push(
            catch.get("Next"),
            Some(format!("catch {}", errors.join(", "))),
        );
    }
    out
}

/// A choice rule in a few words: `$.valid == true`, a JSONata condition as written, or `rule N`.
fn choice_label(rule: &Value, index: usize) -> String {
    if let Some(condition) = rule.get("Condition").and_then(Value::as_str) {
        return condition.to_owned();
    }
    let Some(variable) = rule.get("Variable").and_then(Value::as_str) else {
        return format!("rule {}", index + 1);
    };
    let ops = [
        ("Equals", "=="),
        ("GreaterThanEquals", ">="),
        ("LessThanEquals", "<="),
        ("GreaterThan", ">"),
        ("LessThan", "<"),
        ("Matches", "matches"),
        ("IsPresent", "is present:"),
        ("IsNull", "is null:"),
    ];
    if let Value::Object(map) = rule {
        for (key, value) in map {
            if let Some((_, op)) = ops.iter().find(|(suffix, _)| key.ends_with(suffix)) {
                let value = match value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                return format!("{variable} {op} {value}");
            }
        }
    }
    format!("{variable} (rule {})", index + 1)
}

fn read_state(
    name: &str,
    body: &Value,
    wiring: &Wiring<'_>,
    depth: usize,
    budget: &mut usize,
    cut: &mut Option<&'static str>,
) -> State {
    let kind = body.get("Type").and_then(Value::as_str).unwrap_or("?");
    let mut state = State {
        name: short(name),
        kind: short(kind),
        function: None,
        service: None,
        resource: None,
        next: transitions(body),
        branches: Vec::new(),
        end: body.get("End").and_then(Value::as_bool) == Some(true)
            || matches!(kind, "Succeed" | "Fail"),
    };
    if kind == "Task" {
        let resource = body.get("Resource").and_then(Value::as_str).unwrap_or("");
        let args = body
            .get("Parameters")
            .or_else(|| body.get("Arguments"))
            .and_then(Value::as_object);
        match resource.split_once(":states:::") {
            Some((_, call)) => {
                let call = call.split('.').next().unwrap_or(call);
                if call == "lambda:invoke" {
                    state.function = args
                        .and_then(|a| a.get("FunctionName"))
                        .and_then(Value::as_str)
                        .and_then(|f| wiring.resource_in(f));
                } else {
                    state.service = Some(short(call));
                    state.resource = args.and_then(|a| first_wired(a, wiring));
                }
            }
            None => match wiring.resource_in(resource) {
                // A Task whose Resource is a function's ARN invokes it directly; an activity or
                // anything else is shown by its resource.
                Some(target) => state.function = Some(target),
                None => state.service = Some(short(resource)),
            },
        }
    }
    let nested: Vec<&Value> = match kind {
        "Parallel" => body
            .get("Branches")
            .and_then(Value::as_array)
            .map(|b| b.iter().collect())
            .unwrap_or_default(),
        "Map" => body
            .get("ItemProcessor")
            .or_else(|| body.get("Iterator"))
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    if !nested.is_empty() {
        if depth + 1 >= MAX_DEPTH {
            *cut = Some("it nests Parallel and Map states deeper than the graph draws");
        } else {
            state.branches = nested
                .into_iter()
                .map(|branch| read_states(branch, wiring, depth + 1, budget, cut))
                .collect();
        }
    }
    state
}

/// The first resource named by a `${...}` in a service call's arguments (`TableName`,
/// `TopicArn`, `QueueUrl`, …), looking at the arguments in order, not inside nested objects.
fn first_wired(args: &Map<String, Value>, wiring: &Wiring<'_>) -> Option<String> {
    args.values()
        .filter_map(Value::as_str)
        .find_map(|text| wiring.resource_in(text))
}

/// For each Lambda function of a template that runs a function of the bundle: the bundle
/// function's name and how it ships (`price, compiled`), by the resource's logical id.
pub fn function_notes(
    template: &Value,
    manifest: &crate::BundleManifest,
) -> BTreeMap<String, String> {
    crate::template::function_code_parameters(template)
        .into_iter()
        .filter_map(|(logical_id, parameter)| {
            let f = manifest
                .functions
                .iter()
                .find(|f| f.code_parameter == parameter)?;
            Some((logical_id, format!("{}, {}", f.name, f.kind.as_str())))
        })
        .collect()
}

impl State {
    /// What the state does, in a few words: the function it invokes (with `notes` on it), the
    /// service call it makes, or its type.
    pub fn does(&self, notes: &BTreeMap<String, String>) -> String {
        match (&self.function, &self.service) {
            (Some(function), _) => match notes.get(function) {
                Some(note) => format!("invokes {function} ({note})"),
                None => format!("invokes {function}"),
            },
            (None, Some(service)) => match &self.resource {
                Some(resource) => format!("{service} on {resource}"),
                None => service.clone(),
            },
            (None, None) if self.kind == "Map" && !self.branches.is_empty() => {
                "Map: the branch runs for each item".to_owned()
            }
            (None, None) if !self.branches.is_empty() => {
                format!("{}: {} branches at once", self.kind, self.branches.len())
            }
            (None, None) => self.kind.clone(),
        }
    }
}

impl StateMachine {
    /// The graph as text, one state a line (branches indented), each with what it does and
    /// where a run goes next: for `installer plan` and `release inspect`.
    pub fn describe(&self, notes: &BTreeMap<String, String>) -> String {
        fn lines(
            states: &[State],
            depth: usize,
            notes: &BTreeMap<String, String>,
            out: &mut String,
        ) {
            for s in states {
                let next: Vec<String> = s
                    .next
                    .iter()
                    .map(|t| match &t.label {
                        Some(label) => format!("{} ({label})", t.to),
                        None => t.to.clone(),
                    })
                    .collect();
                let then = if next.is_empty() {
                    if s.end {
                        " → end".to_owned()
                    } else {
                        String::new()
                    }
                } else {
                    format!(" → {}", next.join("; "))
                };
                out.push_str(&format!(
                    "{:indent$}{}: {}{then}\n",
                    "",
                    s.name,
                    s.does(notes),
                    indent = 2 + 2 * depth
                ));
                for (i, branch) in s.branches.iter().enumerate() {
                    out.push_str(&format!(
                        "{:indent$}branch {}:\n",
                        "",
                        i + 1,
                        indent = 4 + 2 * depth
                    ));
                    lines(branch, depth + 2, notes, out);
                }
            }
        }
        let mut out = format!("State machine {}:\n", self.logical_id);
        lines(&self.states, 0, notes, &mut out);
        if let Some(note) = &self.note {
            out.push_str(&format!("  (not all of it is shown: {note})\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn template(props: Value) -> Value {
        serde_json::json!({
            "AWSTemplateFormatVersion": "2010-09-09",
            "Resources": {
                "Validate": {"Type": "AWS::Lambda::Function"},
                "Price": {"Type": "AWS::Lambda::Function"},
                "Orders": {"Type": "AWS::DynamoDB::Table"},
                "Flow": {"Type": "AWS::StepFunctions::StateMachine", "Properties": props}
            }
        })
    }

    const DEFINITION: &str = r#"{"StartAt":"Check","States":{
        "Check":{"Type":"Task","Resource":"arn:${AWS::Partition}:states:::lambda:invoke",
                 "Parameters":{"FunctionName":"${Validate.Arn}","Payload.$":"$"},"Next":"Ok?"},
        "Ok?":{"Type":"Choice","Choices":[{"Variable":"$.valid","BooleanEquals":true,"Next":"Both"}],
               "Default":"No"},
        "No":{"Type":"Fail"},
        "Both":{"Type":"Parallel","Next":"Done","Branches":[
            {"StartAt":"Price","States":{"Price":{"Type":"Task","Resource":"${PriceArn}","End":true}}},
            {"StartAt":"Store","States":{"Store":{"Type":"Task",
               "Resource":"arn:aws:states:::dynamodb:putItem","Parameters":{"TableName":"${Orders}"},
               "Catch":[{"ErrorEquals":["States.ALL"],"Next":"Lost"}],"End":true},
               "Lost":{"Type":"Pass","End":true}}}]},
        "Done":{"Type":"Succeed"}}}"#;

    fn check(machine: &StateMachine) {
        assert_eq!(machine.note, None, "{machine:?}");
        let names: Vec<&str> = machine.states.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["Check", "Ok?", "Both", "Done", "No"]);
        assert_eq!(machine.states[0].function.as_deref(), Some("Validate"));
        let choice = &machine.states[1];
        assert_eq!(
            choice.next[0].label.as_deref(),
            Some("$.valid == true"),
            "{choice:?}"
        );
        assert_eq!(choice.next[1].label.as_deref(), Some("default"));
        let both = &machine.states[2];
        assert_eq!(both.branches.len(), 2);
        assert_eq!(both.branches[0][0].function.as_deref(), Some("Price"));
        let store = &both.branches[1][0];
        assert_eq!(store.service.as_deref(), Some("dynamodb:putItem"));
        assert_eq!(store.resource.as_deref(), Some("Orders"));
        assert_eq!(store.next[0].label.as_deref(), Some("catch States.ALL"));
        assert!(machine.states[3].end && machine.states[4].end);
        let text = machine.describe(&BTreeMap::from([(
            "Validate".to_owned(),
            "validate, source".to_owned(),
        )]));
        assert!(
            text.contains("Check: invokes Validate (validate, source) → Ok?"),
            "{text}"
        );
        assert!(
            text.contains("Ok?: Choice → Both ($.valid == true); No (default)"),
            "{text}"
        );
        assert!(
            text.contains("Store: dynamodb:putItem on Orders → Lost (catch States.ALL)"),
            "{text}"
        );
        assert!(text.contains("Done: Succeed → end"), "{text}");
    }

    #[test]
    fn reads_a_definition_string_with_fn_sub_variables() {
        let t = template(
            serde_json::json!({"DefinitionString": {"Fn::Sub": [DEFINITION,
            {"PriceArn": {"Fn::GetAtt": ["Price", "Arn"]}}]}}),
        );
        check(&state_machines(&t)[0]);
    }

    #[test]
    fn reads_a_definition_object_with_substitutions() {
        let mut def: Value = serde_json::from_str(DEFINITION).unwrap();
        def["States"]["Check"]["Parameters"]["FunctionName"] = serde_json::json!("${ValidateArn}");
        let t = template(
            serde_json::json!({"Definition": def, "DefinitionSubstitutions": {
            "ValidateArn": {"Fn::GetAtt": ["Validate", "Arn"]},
            "PriceArn": {"Fn::GetAtt": "Price.Arn"},
            "Orders": {"Ref": "Orders"}}}),
        );
        check(&state_machines(&t)[0]);
    }

    #[test]
    fn reads_a_joined_definition_string() {
        let (head, tail) = DEFINITION.split_once("${PriceArn}").unwrap();
        let t = template(serde_json::json!({"DefinitionString": {"Fn::Join": ["", [
            head, {"Fn::GetAtt": ["Price", "Arn"]}, tail]]}}));
        check(&state_machines(&t)[0]);
    }

    #[test]
    fn a_cycle_of_states_is_drawn_once() {
        let t = template(serde_json::json!({"DefinitionString":
            r#"{"StartAt":"A","States":{"A":{"Type":"Pass","Next":"B"},"B":{"Type":"Pass","Next":"A"}}}"#}));
        let machine = &state_machines(&t)[0];
        assert_eq!(machine.states.len(), 2);
        assert_eq!(machine.states[1].next[0].to, "A");
    }

    #[test]
    fn deep_nesting_and_huge_machines_are_cut_with_a_note() {
        let mut def =
            serde_json::json!({"StartAt": "S", "States": {"S": {"Type": "Pass", "End": true}}});
        for _ in 0..20 {
            def = serde_json::json!({"StartAt": "P", "States": {"P": {"Type": "Parallel", "End": true, "Branches": [def]}}});
        }
        let t = template(serde_json::json!({"Definition": def}));
        let machine = &state_machines(&t)[0];
        assert!(
            machine.note.as_deref().unwrap().contains("deeper"),
            "{machine:?}"
        );
        let states: Map<String, Value> = (0..1000)
            .map(|i| {
                (
                    format!("S{i}"),
                    serde_json::json!({"Type": "Pass", "Next": format!("S{}", i + 1)}),
                )
            })
            .collect();
        let t = template(serde_json::json!({"Definition": {"StartAt": "S0", "States": states}}));
        let machine = &state_machines(&t)[0];
        assert_eq!(machine.states.len(), MAX_STATES);
        assert!(machine.note.as_deref().unwrap().contains("more states"));
    }

    #[test]
    fn definitions_that_cannot_be_read_say_why() {
        for (props, why) in [
            (
                serde_json::json!({"DefinitionS3Location": {"Bucket": "b", "Key": "k"}}),
                "S3",
            ),
            (
                serde_json::json!({"DefinitionString": "not json"}),
                "not JSON",
            ),
            (
                serde_json::json!({"DefinitionString": {"Fn::If": []}}),
                "not a string",
            ),
            (serde_json::json!({}), "no definition"),
        ] {
            let machine = &state_machines(&template(props))[0];
            assert!(machine.states.is_empty());
            assert!(
                machine.note.as_deref().unwrap().contains(why),
                "{machine:?}"
            );
        }
    }
}
