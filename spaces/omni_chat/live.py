"""The Space's live voice tab: the browser talks to `/v1/realtime` (omni_hf's Realtime API endpoint) directly.

The microphone is captured at 24 kHz in the page, sent as pcm16 in 100 ms packets; the server prefills it as it
arrives (chunked prefill), detects the end of each turn with its energy VAD, and streams the spoken reply, played
as it comes. For each turn the page shows the time from the end of speech (the last voiced sample, as placed by the
server's VAD) to the first reply audio, which includes the VAD's silence wait.
"""

import os

import gradio as gr
from fastapi import FastAPI

SILENCE_MS = int(os.environ.get("OMNI_LIVE_SILENCE_MS", "500"))

LIVE_HEAD = """
<script>
window.omniLive = {
  ws: null, ctx: null, stream: null, node: null, packet: [], sent: 0, marks: [], playAt: 0,
  turns: 0, audioSamples: 0, latencies: [], waiting: null, transcript: "",
  el(id) { return document.getElementById(id); },
  status(text) { const e = this.el("live-status"); if (e) e.textContent = text; },
  b64(int16) {
    let s = ""; const bytes = new Uint8Array(int16.buffer);
    for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
    return btoa(s);
  },
  async start() {
    if (this.ws) return;
    const voice = (this.el("live-voice") || {}).value || "Chelsie";
    const proto = location.protocol === "https:" ? "wss" : "ws";
    this.ws = new WebSocket(`${proto}://${location.host}/v1/realtime`);
    this.ws.onmessage = (m) => this.onEvent(JSON.parse(m.data));
    this.ws.onclose = () => { this.status("Disconnected"); this.ws = null; };
    await new Promise((ok, fail) => { this.ws.onopen = ok; this.ws.onerror = fail; });
    this.ws.send(JSON.stringify({type: "session.update", session: {type: "realtime", audio: {
      input: {turn_detection: {type: "server_vad", silence_duration_ms: %(silence)d}}, output: {voice}}}}));
    this.ctx = new AudioContext({sampleRate: 24000});
    this.stream = await navigator.mediaDevices.getUserMedia({audio: {channelCount: 1, echoCancellation: true}});
    const source = this.ctx.createMediaStreamSource(this.stream);
    this.node = this.ctx.createScriptProcessor(2048, 1, 1);
    this.node.onaudioprocess = (e) => this.capture(e.inputBuffer.getChannelData(0));
    source.connect(this.node); this.node.connect(this.ctx.destination);
    this.playAt = this.ctx.currentTime;
    this.status("Listening: speak, then pause");
  },
  capture(samples) {
    for (const x of samples) this.packet.push(x);
    while (this.packet.length >= 2400 && this.ws && this.ws.readyState === 1) {
      const chunk = this.packet.splice(0, 2400), pcm = new Int16Array(2400);
      for (let i = 0; i < 2400; i++) pcm[i] = Math.max(-32768, Math.min(32767, chunk[i] * 32768));
      this.ws.send(JSON.stringify({type: "input_audio_buffer.append", audio: this.b64(pcm)}));
      this.sent += 2400;
      this.marks.push([this.sent, performance.now()]);  // when the stream had reached this sample
      if (this.marks.length > 3000) this.marks.splice(0, 1000);
    }
  },
  captured(ms) {  // wall time at which sample `ms` had been captured
    const sample = ms * 24;
    for (const [n, t] of this.marks) if (n >= sample) return t - (n - sample) / 24;
    return performance.now();
  },
  onEvent(e) {
    if (e.type === "input_audio_buffer.speech_started") {
      this.status("Hearing you…");
      this.playAt = this.ctx ? this.ctx.currentTime : 0;  // barge-in: the server stops the reply
    } else if (e.type === "input_audio_buffer.speech_stopped") {
      this.waiting = this.captured(e.audio_end_ms); this.transcript = ""; this.status("Answering…");
    } else if (e.type === "response.output_audio_transcript.delta" || e.type === "response.output_text.delta") {
      this.transcript += e.delta; const t = this.el("live-transcript"); if (t) t.textContent = this.transcript;
    } else if (e.type === "response.output_audio.delta") {
      if (this.waiting !== null) {
        const s = (performance.now() - this.waiting) / 1000;
        this.turns += 1; this.latencies.push(s); this.waiting = null;
        const row = document.createElement("li");
        row.textContent = `Turn ${this.turns}: first audio ${s.toFixed(2)} s after the end of speech ` +
          `(includes the VAD's ${%(silence)d} ms silence wait)`;
        const list = this.el("live-turns"); if (list) list.appendChild(row);
      }
      this.play(e.delta);
    } else if (e.type === "response.done") {
      this.status("Listening: speak, then pause");
    } else if (e.type === "error") {
      this.status("Error: " + e.error.message);
    }
  },
  play(b64) {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    const pcm = new Int16Array(bytes.buffer), buffer = this.ctx.createBuffer(1, pcm.length, 24000);
    const data = buffer.getChannelData(0);
    for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
    const src = this.ctx.createBufferSource(); src.buffer = buffer; src.connect(this.ctx.destination);
    this.playAt = Math.max(this.playAt, this.ctx.currentTime); src.start(this.playAt); this.playAt += buffer.duration;
    this.audioSamples += pcm.length;
  },
  stop() {
    if (this.ws) this.ws.close();
    if (this.stream) this.stream.getTracks().forEach((t) => t.stop());
    if (this.ctx) this.ctx.close();
    this.ws = this.stream = this.ctx = null; this.status("Stopped");
  },
};
document.addEventListener("click", (e) => {
  if (e.target.closest("#live-start")) window.omniLive.start().catch((err) => window.omniLive.status("Error: " + err));
  if (e.target.closest("#live-stop")) window.omniLive.stop();
});
</script>
""" % {"silence": SILENCE_MS}  # noqa: UP031 (the script is full of braces)


def build_live_tab(speakers: list[str]) -> None:
    """The live voice tab (call inside `gr.Blocks`): start/stop, the voice, per-turn latency, the reply's text."""
    options = "".join(f'<option value="{name}">{name}</option>' for name in speakers)
    with gr.Tab("Live voice", elem_id="live-tab"):
        gr.Markdown(
            "Talk with the model: press **Start**, allow the microphone, speak and pause. The reply is spoken while it"
            " is generated; speaking over it interrupts it. Your speech is prefilled while you talk, so the answer "
            "starts soon after you stop."
        )
        gr.HTML(
            f'<div><label>Voice <select id="live-voice">{options}</select></label> '
            '<button id="live-start" class="lg primary">Start</button> '
            '<button id="live-stop" class="lg secondary">Stop</button></div>'
            '<p id="live-status">Stopped</p><p id="live-transcript"></p><ol id="live-turns"></ol>'
        )


def serve(demo: gr.Blocks, model, processor, *, generation_kwargs: dict, engine=None, **mount_kwargs) -> None:
    """Serve the Space and `/v1/realtime` from one FastAPI app (host/port from GRADIO_SERVER_NAME/PORT); the live
    tab's sessions run on `engine` (the chat tab's)."""
    import uvicorn

    from omni_hf.serving.realtime import add_realtime_routes

    app = FastAPI()
    add_realtime_routes(app, model, processor, generation_kwargs=generation_kwargs, model_name="omni_chat",
                        engine=engine)  # fmt: skip
    app = gr.mount_gradio_app(app, demo, path="/", head=LIVE_HEAD, **mount_kwargs)
    host = os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1")
    uvicorn.run(app, host=host, port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")), log_level="warning")
