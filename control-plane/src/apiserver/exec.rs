//! `pods/exec`: a command run in a container by the pod's node agent
//! (`skiff.agent.v1.Agent/Exec`), relayed over the WebSocket channel protocol as kubectl and the
//! Python client speak it: stdin on channel 0, stdout 1, stderr 2, the outcome as a `Status` on
//! channel 3, terminal resizes on 4, and (v5) the end of stdin as a close signal.

use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use skiff_proto::agent::agent_client::AgentClient;
use skiff_proto::agent::exec_input::Input;
use skiff_proto::agent::exec_output::Output;
use skiff_proto::agent::{ExecInput, ExecStart, TerminalSize};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tracing::{debug, info_span, Instrument};

use super::agent;
use super::channels::{self, Incoming};
use super::status::Status;
use crate::store::Store;

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;

/// How many client messages may wait for the agent before the client is held back.
const INPUT_QUEUE: usize = 16;

/// The query of an exec request (`PodExecOptions`).
#[derive(Debug, Default, PartialEq)]
struct Options {
    command: Vec<String>,
    container: Option<String>,
    stdin: bool,
    stdout: bool,
    stderr: bool,
    tty: bool,
}

impl Options {
    fn parse(params: &[(String, String)]) -> Result<Options, Status> {
        let mut o = Options::default();
        for (k, v) in params {
            let on = matches!(v.as_str(), "true" | "1");
            match k.as_str() {
                "command" => o.command.push(v.clone()),
                "container" => o.container = Some(v.clone()),
                "stdin" => o.stdin = on,
                "stdout" => o.stdout = on,
                "stderr" => o.stderr = on,
                "tty" => o.tty = on,
                _ => {}
            }
        }
        if o.command.is_empty() {
            return Err(Status::bad_request(
                "you must specify at least 1 command".into(),
            ));
        }
        if !(o.stdin || o.stdout || o.stderr) {
            return Err(Status::bad_request(
                "you must specify at least 1 of stdin, stdout, stderr".into(),
            ));
        }
        Ok(o)
    }
}

/// Serves `GET .../pods/<name>/exec` with a WebSocket upgrade.
pub async fn serve(
    store: &Store,
    pod: Value,
    params: &[(String, String)],
    headers: &HeaderMap,
    ws: Option<WebSocketUpgrade>,
) -> Result<Response, Status> {
    let opts = Options::parse(params)?;
    let container = agent::container(&pod, opts.container.as_deref())?;
    let phase = agent::phase(&pod);
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(Status::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    if phase != "Running" {
        return Err(Status::bad_request(format!(
            "unable to upgrade connection: pod {} is not running; current phase is {phase}",
            super::objects::name_of(&pod)
        )));
    }
    let (ws, protocol) = channels::negotiate(headers, ws, &[channels::V5, channels::V4])?;
    let (client, node) = agent::connect(store, &pod).await?;
    let (namespace, name, pod_uid) = agent::pod_identity(&pod);
    let span = info_span!("exec", pod = %format!("{namespace}/{name}"), %node, %container);
    let start = ExecStart {
        namespace,
        pod: name,
        pod_uid,
        container,
        command: opts.command,
        stdin: opts.stdin,
        stdout: opts.stdout,
        stderr: opts.stderr && !opts.tty,
        tty: opts.tty,
    };
    let v5 = protocol == channels::V5;
    Ok(ws.on_upgrade(move |socket| run(socket, v5, client, start).instrument(span)))
}

/// The outcome for channel 3: upstream's Status for an exit code.
fn exit_status(command: &[String], code: i32) -> Value {
    if code == 0 {
        return json!({"metadata": {}, "status": "Success"});
    }
    json!({
        "metadata": {},
        "status": "Failure",
        "message": format!(
            "command terminated with non-zero exit code: error executing command [{}], exit code {code}",
            command.join(" ")
        ),
        "reason": "NonZeroExitCode",
        "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
    })
}

/// The outcome for channel 3 when the command could not run at all.
fn failure(message: String) -> Value {
    json!({
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "InternalError",
        "code": 500,
    })
}

/// Reads the client's messages into agent inputs until the client closes.
async fn pump_client(
    mut source: futures::stream::SplitStream<WebSocket>,
    inputs: mpsc::Sender<ExecInput>,
    v5: bool,
) {
    while let Some(Ok(message)) = source.next().await {
        let input = match channels::parse(message, v5) {
            Incoming::Data(STDIN, data) => Input::Stdin(data),
            Incoming::Data(RESIZE, data) => match serde_json::from_slice::<Value>(&data) {
                Ok(size) => Input::Resize(TerminalSize {
                    width: size["Width"].as_u64().unwrap_or(0).min(u32::MAX.into()) as u32,
                    height: size["Height"].as_u64().unwrap_or(0).min(u32::MAX.into()) as u32,
                }),
                Err(e) => {
                    debug!(error = %e, "ignoring a malformed resize message");
                    continue;
                }
            },
            Incoming::Closed(STDIN) => Input::CloseStdin(true),
            Incoming::End => break,
            Incoming::Data(..) | Incoming::Closed(_) | Incoming::Nothing => continue,
        };
        if inputs.send(ExecInput { input: Some(input) }).await.is_err() {
            break;
        }
    }
}

/// Runs one exec session: the client's WebSocket on one side, the agent's stream on the other.
async fn run(socket: WebSocket, v5: bool, mut client: AgentClient<Channel>, start: ExecStart) {
    let command = start.command.clone();
    let (mut sink, source) = socket.split();
    let (inputs, rx) = mpsc::channel(INPUT_QUEUE);
    // Cannot fail: the receiver is alive and the queue empty.
    let _ = inputs.try_send(ExecInput {
        input: Some(Input::Start(start)),
    });
    let reader = tokio::spawn(pump_client(source, inputs, v5));
    let outcome = match client.exec(ReceiverStream::new(rx)).await {
        Err(s) => failure(s.message().to_string()),
        Ok(response) => {
            let mut outputs = response.into_inner();
            loop {
                let (channel, data) = match outputs.message().await {
                    Ok(Some(out)) => match out.output {
                        Some(Output::Stdout(d)) => (STDOUT, d),
                        Some(Output::Stderr(d)) => (STDERR, d),
                        Some(Output::ExitCode(code)) => break exit_status(&command, code),
                        None => continue,
                    },
                    Ok(None) => {
                        break failure(
                            "the node agent ended the command without an exit code".into(),
                        )
                    }
                    Err(s) => break failure(s.message().to_string()),
                };
                if sink.send(channels::frame(channel, &data)).await.is_err() {
                    debug!("the client went away");
                    reader.abort();
                    return;
                }
            }
        }
    };
    debug!(outcome = %outcome, "exec finished");
    let _ = sink
        .send(channels::frame(ERROR, outcome.to_string().as_bytes()))
        .await;
    let _ = sink.send(channels::normal_close()).await;
    reader.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Vec<(String, String)> {
        serde_urlencoded::from_str(q).unwrap()
    }

    #[test]
    fn options_follow_pod_exec_options() {
        let o = Options::parse(&params(
            "command=sh&command=-c&command=echo+hi&container=app&stdout=true&stderr=true",
        ))
        .unwrap();
        assert_eq!(o.command, ["sh", "-c", "echo hi"]);
        assert_eq!(o.container.as_deref(), Some("app"));
        assert!(o.stdout && o.stderr && !o.stdin && !o.tty);
        assert_eq!(
            Options::parse(&params("stdout=true")).unwrap_err().message,
            "you must specify at least 1 command"
        );
        assert!(Options::parse(&params("command=ls")).is_err());
    }

    #[test]
    fn exit_codes_become_statuses() {
        assert_eq!(exit_status(&[], 0)["status"], "Success");
        let failed = exit_status(&["sh".into(), "-c".into(), "exit 7".into()], 7);
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(failed["details"]["causes"][0]["message"], "7");
        assert!(failed["message"]
            .as_str()
            .unwrap()
            .contains("[sh -c exit 7], exit code 7"));
    }
}
