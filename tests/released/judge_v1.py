"""A stand-in with the shape of the released SpeechRole judge, first version (one call per metric).

Written for speechrole's tests: the same statements and variable names as the released
`benchmark/gemini_judge.py`, but every sentence, the model name and the roles are our own. speechrole
reads it with `ast` (never running it); the tests also run it, against a fake client, to see what it
would send.
"""

# ruff: noqa  (the released script's shape, kept as it is)

import argparse
import base64
import json
import os
import re
import time

from openai import OpenAI
from tqdm import tqdm

model = "stand-in-judge-v1"

api_keys = [
    "",
]
current_key_index = 0


def get_client():
    return OpenAI(api_key=api_keys[current_key_index], base_url="")


client = get_client()


def wav_to_base64(wav_path: str) -> str:
    with open(wav_path, "rb") as audio_file:
        base64_audio = base64.b64encode(audio_file.read()).decode("utf-8")
    return base64_audio


def parse_gemini_result(result_text: str) -> dict:
    score_pattern = r"\[Scores\]:\s*\((\d+),\s*(\d+)\)"
    score_match = re.search(score_pattern, result_text)
    return {"reason": result_text.strip(), "score": (int(score_match.group(1)), int(score_match.group(2)))}


metrics = {
    "Instruction_Adherence": "Instruction Adherence: does the speaker keep to the part and never step out of it?",
    "Speech_Fluency": "Speech Fluency: is the talk smooth, without halting or tripping over words?",
    "Conversational_Coherence": "Conversational Coherence: does each reply fit what came before it?",
    "Speech_Naturalness": "Speech Naturalness: could this be a person talking rather than a machine?",
    "Prosodic_Consistency": "Prosodic Consistency: do melody and stress suit this character throughout?",
    "Emotion_Appropriateness": "Emotion Appropriateness: is the feeling in the voice right for the moment?",
    "Personality_Consistency": "Personality Consistency: does the character's temperament come through?",
    "Knowledge_Consistency": "Knowledge Consistency: does the speaker know what the character knows, no more?",
}

roles = ["Ada", "Bram", "libai"]


def main(mode, test_model):
    global client

    for role in tqdm(roles):
        save_path = f"test_results/{test_model}/{mode}/{role}.json"
        if os.path.exists(save_path):
            continue
        os.makedirs(os.path.dirname(save_path), exist_ok=True)

        gt_data_path = f"test_data/{mode}_turn/{role}.json"
        with open(gt_data_path) as f:
            gt_data = json.load(f)

        line = gt_data[0]["system_prompt"].split("\n")[0]
        role_name = line.split("I want you to act like ")[-1][:-1]

        test_data_path = f"raw_data/{test_model}/{mode}_result/json/{role}.json"
        with open(test_data_path) as f:
            test_data = json.load(f)

        output_list = []
        for i in range(len(gt_data)):
            question = (
                gt_data[i]["system_prompt"]
                + "Several questions follow, each after ###:\n"
                + "\n###\n".join(
                    gt_data[i]["dialogue"][j]["user"] for j in range(len(gt_data[i]["dialogue"]))
                )
            )
            if "dialogue" in test_data:
                dialogue_data = test_data["dialogue"]
            else:
                dialogue_key = f"dialogue_{i}"
                if dialogue_key not in test_data:
                    continue
                dialogue_data = test_data[dialogue_key]

            base64_audio1 = [
                {
                    "type": "input_audio",
                    "input_audio": {
                        "data": "data:audio/wav;base64,"
                        + wav_to_base64(dialogue_data[j]["model_output"]["audio_path"]),
                        "format": "wav",
                    },
                }
                for j in range(len(gt_data[i]["dialogue"]))
            ]
            base64_audio2 = [
                {
                    "type": "input_audio",
                    "input_audio": {
                        "data": "data:audio/wav;base64,"
                        + wav_to_base64(gt_data[i]["dialogue"][j]["role_speech_path"]),
                        "format": "wav",
                    },
                }
                for j in range(len(gt_data[i]["dialogue"]))
            ]

            output_list.append({"idx": i})
            for metric in tqdm(metrics):
                messages = [
                    {"role": "system", "content": "You grade spoken answers."},
                    {
                        "role": "user",
                        "content": [
                            {
                                "type": "text",
                                "text": f"# The task\n\n{question}\n\n# Model A answers, a clip per round\n\n",
                            }
                        ]
                        + base64_audio1
                        + [
                            {
                                "type": "text",
                                "text": "\n\n# Model A done\n\n# Model B answers, a clip per round\n\n",
                            }
                        ]
                        + base64_audio2
                        + [
                            {
                                "type": "text",
                                "text": f"\n\n# Model B done\n\n# What to do\n\nBoth models play {role_name}.\n\n"
                                f"Grade this aspect:\n{metrics[metric]}\n\n"
                                + "Compare them briefly, then give two scores from 1 (bad) to 10 (excellent).\n\n"
                                "End with: [Scores]: (score of Model A, score of Model B)",
                            }
                        ],
                    },
                ]
                while True:
                    try:
                        response = client.chat.completions.create(
                            model=model, n=1, messages=messages, timeout=300
                        )
                        output_list[-1][f"{metric}_results"] = parse_gemini_result(
                            response.choices[0].message.content
                        )
                        break
                    except Exception:
                        time.sleep(10)
                        continue
        with open(save_path, "w", encoding="utf-8") as json_file:
            json.dump(output_list, json_file, indent=4, ensure_ascii=False)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", type=str, required=True)
    parser.add_argument("--test_model", type=str, required=True)
    args = parser.parse_args()
    main(args.mode, args.test_model)
